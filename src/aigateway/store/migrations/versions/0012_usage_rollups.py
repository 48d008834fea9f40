"""usage_daily: usage rollups per (customer, UTC day, model), built from the existing usage_records;
a partial index of the ledger's non-charge entries

Revision ID: 0012_usage_rollups
Revises:
Depends on: 0001_core

Its own branch ('rollups'), so it never makes a second head beside the core branch's
later revisions. The backfill SQL is a frozen copy of billing.rollups.REBUILD_SQL.
"""
import sqlalchemy as sa
from alembic import op

revision = '0012_usage_rollups'
down_revision = None
branch_labels = ('rollups',)
depends_on = '0001_core'

_BACKFILL = {
    "sqlite": """
        INSERT INTO usage_daily (customer_id, day, model, requests, input_tokens, output_tokens, cost,
                                 charges, last_charge_at)
        SELECT customer_id, substr(created_at, 1, 10), model, count(*), coalesce(sum(input_tokens), 0),
               coalesce(sum(output_tokens), 0), coalesce(sum(cost), 0),
               sum(CASE WHEN cost <> 0 THEN 1 ELSE 0 END), max(CASE WHEN cost <> 0 THEN created_at END)
        FROM usage_records GROUP BY customer_id, substr(created_at, 1, 10), model
    """,
    "postgresql": """
        INSERT INTO usage_daily (customer_id, day, model, requests, input_tokens, output_tokens, cost,
                                 charges, last_charge_at)
        SELECT customer_id, (created_at AT TIME ZONE 'UTC')::date, model, count(*),
               coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost), 0),
               count(*) FILTER (WHERE cost <> 0), max(created_at) FILTER (WHERE cost <> 0)
        FROM usage_records GROUP BY 1, 2, 3
    """,
}


def upgrade() -> None:
    op.create_table(
        'usage_daily',
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('requests', sa.BigInteger(), nullable=False),
        sa.Column('input_tokens', sa.BigInteger(), nullable=False),
        sa.Column('output_tokens', sa.BigInteger(), nullable=False),
        sa.Column('cost', sa.BigInteger(), nullable=False),
        sa.Column('charges', sa.BigInteger(), nullable=False),
        sa.Column('last_charge_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_usage_daily_customer_id_customers')),
        sa.PrimaryKeyConstraint('customer_id', 'day', 'model', name=op.f('pk_usage_daily')),
    )
    # The portal lists a customer's non-charge entries beside the rollups: a partial index,
    # so that does not read every charge.
    op.create_index('ix_ledger_customer_noncharge', 'ledger_entries', ['customer_id', 'created_at'],
                    postgresql_where=sa.text("kind <> 'charge'"), sqlite_where=sa.text("kind <> 'charge'"))
    bind = op.get_bind()
    op.execute(sa.text(_BACKFILL[bind.dialect.name]))


def downgrade() -> None:
    op.drop_table('usage_daily')
    op.drop_index('ix_ledger_customer_noncharge', table_name='ledger_entries')
