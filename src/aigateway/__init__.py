"""aigateway: a self-hosted, OpenAI-compatible AI gateway that sells LLM access for prepaid TMT."""

__version__ = "0.1.0"
