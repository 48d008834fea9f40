"""Providers and models defined in the database (the operator console writes them).

The config file still defines providers and models; these rows ADD to them. On a name
clash the config file wins (aigateway.pricing.catalog skips the row), so what is in the file is
always what runs. A provider's key is either the name of an environment variable
(`api_key_env`) or a secret stored encrypted (`api_key_enc`, AES-256-GCM, see
providers.secrets); the plain key is never stored.
"""

from sqlalchemy import Column, DateTime, Integer, String, Table, Text

from aigateway.store.metadata import metadata, utcnow

catalog_providers = Table(
    "catalog_providers",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("base_url", String(500), nullable=False),
    Column("api_key_env", String(200), nullable=True),
    Column("api_key_enc", Text, nullable=True),  # "v1:" + base64(nonce | ciphertext | tag)
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow),
)

catalog_models = Table(
    "catalog_models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("type", String(20), nullable=False),  # chat | embedding
    Column("routes", Text, nullable=False),  # JSON: [{"provider", "model", "priority", "weight"}]
    Column("context_length", Integer, nullable=True),
    Column("max_output_tokens", Integer, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow),
    # Follow a [pricing.sources.NAME] source instead of a hand-set price (0016_console_model_pricing);
    # `markup` is a decimal fraction as text ("0.20" = +20 %), None: the source's / default markup.
    Column("price_source", String(100), nullable=True),
    Column("price_source_model", String(200), nullable=True),  # the source's id; None: the model's name
    Column("markup", String(40), nullable=True),
)
