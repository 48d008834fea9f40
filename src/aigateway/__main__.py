from aigateway.cli import main

main()
