"""Running the gateway: several worker processes on one port (`aigateway serve --workers N`).

- `workers`  how many workers a deployment may run, each worker's own config, and the
             pre-fork master that starts, supervises, restarts and stops them.
"""
