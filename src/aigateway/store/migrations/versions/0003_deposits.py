"""deposits: addresses, seen transactions, deposits, watcher lease

Revision ID: 0003_deposits
Revises:
Depends on: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_deposits'
down_revision = None
branch_labels = ('deposits',)
depends_on = '0001_core'

_BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'deposit_addresses',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('derivation_index', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('xpub_fp', sa.String(length=16), nullable=False),
        sa.Column('network', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('cursor_ms', sa.BigInteger(), nullable=False),
        sa.Column('last_polled_ms', sa.BigInteger(), nullable=False),
        sa.Column('watch_until_ms', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_deposit_addresses_customer_id_customers')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deposit_addresses')),
        sa.UniqueConstraint('customer_id', name=op.f('uq_deposit_addresses_customer_id')),
        sa.UniqueConstraint('derivation_index', name=op.f('uq_deposit_addresses_derivation_index')),
        sa.UniqueConstraint('address', name=op.f('uq_deposit_addresses_address')),
    )
    op.create_table(
        'deposit_transactions',
        sa.Column('id', _BigId, autoincrement=True, nullable=False),
        sa.Column('tx_id', sa.String(length=64), nullable=False),
        sa.Column('address_id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('value', sa.String(length=80), nullable=False),
        sa.Column('block_timestamp_ms', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('checks', sa.Integer(), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_check_ms', sa.BigInteger(), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['address_id'], ['deposit_addresses.id'],
                                name=op.f('fk_deposit_transactions_address_id_deposit_addresses')),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_deposit_transactions_customer_id_customers')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deposit_transactions')),
        sa.UniqueConstraint('tx_id', 'address_id', name='uq_deposit_transactions_tx_address'),
    )
    op.create_index('ix_deposit_transactions_status_next', 'deposit_transactions',
                    ['status', 'next_check_ms'], unique=False)
    op.create_index('ix_deposit_transactions_customer', 'deposit_transactions',
                    ['customer_id', 'seen_at'], unique=False)
    op.create_table(
        'deposits',
        sa.Column('id', _BigId, autoincrement=True, nullable=False),
        sa.Column('tx_id', sa.String(length=64), nullable=False),
        sa.Column('log_index', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('address_id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('network', sa.String(length=16), nullable=False),
        sa.Column('contract', sa.String(length=64), nullable=False),
        sa.Column('from_address', sa.String(length=64), nullable=True),
        sa.Column('amount_usdt', sa.BigInteger(), nullable=False),
        sa.Column('decimals', sa.Integer(), nullable=False),
        sa.Column('rate', sa.String(length=40), nullable=False),
        sa.Column('base_rate', sa.String(length=40), nullable=False),
        sa.Column('spread', sa.String(length=40), nullable=False),
        sa.Column('amount_tmt', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('ledger_reference', sa.String(length=200), nullable=True),
        sa.Column('block_number', sa.BigInteger(), nullable=True),
        sa.Column('block_timestamp_ms', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['address_id'], ['deposit_addresses.id'],
                                name=op.f('fk_deposits_address_id_deposit_addresses')),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_deposits_customer_id_customers')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deposits')),
        sa.UniqueConstraint('tx_id', 'log_index', name='uq_deposits_tx_log'),
    )
    op.create_index('ix_deposits_customer_created', 'deposits', ['customer_id', 'created_at'], unique=False)
    op.create_table(
        'deposit_leases',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('holder', sa.String(length=120), nullable=False),
        sa.Column('expires_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_deposit_leases')),
    )


def downgrade() -> None:
    op.drop_table('deposit_leases')
    op.drop_index('ix_deposits_customer_created', table_name='deposits')
    op.drop_table('deposits')
    op.drop_index('ix_deposit_transactions_customer', table_name='deposit_transactions')
    op.drop_index('ix_deposit_transactions_status_next', table_name='deposit_transactions')
    op.drop_table('deposit_transactions')
    op.drop_table('deposit_addresses')
