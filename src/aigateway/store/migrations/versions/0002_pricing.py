"""pricing tables: version details, exchange rates, fetch status, source limits, fetch schedule

Revision ID: 0002_pricing
Revises:
Depends on: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = '0002_pricing'
down_revision = None
branch_labels = ('pricing',)
depends_on = '0001_core'

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'price_version_details',
        sa.Column('price_version_id', sa.BigInteger(), nullable=False),
        sa.Column('previous_version_id', sa.BigInteger(), nullable=True),
        sa.Column('source_model', sa.String(length=200), nullable=True),
        sa.Column('usd_input', sa.String(length=60), nullable=True),
        sa.Column('usd_output', sa.String(length=60), nullable=True),
        sa.Column('fx_rate', sa.String(length=60), nullable=True),
        sa.Column('markup', sa.String(length=60), nullable=True),
        sa.Column('fetch_id', sa.BigInteger(), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('price_version_id', name=op.f('pk_price_version_details')),
    )
    op.create_table(
        'fx_rates',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('currency', sa.String(length=10), nullable=False),
        sa.Column('rate', sa.String(length=60), nullable=False),
        sa.Column('source', sa.String(length=50), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_fx_rates')),
    )
    op.create_index('ix_fx_rates_currency', 'fx_rates', ['currency', 'id'])
    op.create_table(
        'price_fetches',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('ok', sa.Boolean(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('entries', sa.Integer(), nullable=False),
        sa.Column('applied', sa.Integer(), nullable=False),
        sa.Column('held', sa.Integer(), nullable=False),
        sa.Column('unchanged', sa.Integer(), nullable=False),
        sa.Column('problems', sa.Integer(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_price_fetches')),
    )
    op.create_index('ix_price_fetches_source', 'price_fetches', ['source', 'id'])
    op.create_table(
        'model_limits',
        sa.Column('model', sa.String(length=200), nullable=False),
        sa.Column('context_length', sa.Integer(), nullable=True),
        sa.Column('max_output_tokens', sa.Integer(), nullable=True),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('model', name=op.f('pk_model_limits')),
    )
    schedule = op.create_table(
        'pricing_schedule',
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('lease_until_ms', sa.BigInteger(), nullable=False),
        sa.Column('last_started_ms', sa.BigInteger(), nullable=False),
        sa.Column('last_finished_ms', sa.BigInteger(), nullable=False),
        sa.Column('last_ok', sa.Boolean(), nullable=False),
        sa.Column('requested_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_pricing_schedule')),
    )
    op.bulk_insert(schedule, [{'name': 'fetch', 'holder': '', 'lease_until_ms': 0, 'last_started_ms': 0,
                               'last_finished_ms': 0, 'last_ok': True, 'requested_ms': 0}])


def downgrade() -> None:
    op.drop_table('pricing_schedule')
    op.drop_table('model_limits')
    op.drop_index('ix_price_fetches_source', table_name='price_fetches')
    op.drop_table('price_fetches')
    op.drop_index('ix_fx_rates_currency', table_name='fx_rates')
    op.drop_table('fx_rates')
    op.drop_table('price_version_details')
