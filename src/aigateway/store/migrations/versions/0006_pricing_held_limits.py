"""model_limits: a source's context length / output cap beyond the guardrail is held for the operator

Revision ID: 0006_pricing_held_limits
Revises: 0002_pricing
"""
import sqlalchemy as sa
from alembic import op

revision = '0006_pricing_held_limits'
down_revision = '0002_pricing'
branch_labels = None
depends_on = None

_COLUMNS = ("held_context_length", "held_max_output_tokens", "held_source", "held_status", "held_at")


def upgrade() -> None:
    with op.batch_alter_table("model_limits") as batch:
        batch.add_column(sa.Column("held_context_length", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("held_max_output_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("held_source", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("held_status", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("held_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_limits") as batch:
        for name in _COLUMNS:
            batch.drop_column(name)
