"""deposits: per-row failure count, history of operator actions, event cursor, rate override

Revision ID: 0007_deposits_review
Revises: 0003_deposits
"""
import sqlalchemy as sa
from alembic import op

revision = '0007_deposits_review'
down_revision = '0003_deposits'
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('deposit_transactions') as batch:
        batch.add_column(sa.Column('failures', sa.Integer(), nullable=False, server_default='0'))
    op.create_index('ix_deposit_addresses_last_polled', 'deposit_addresses', ['last_polled_ms'], unique=False)
    op.create_index('ix_deposit_addresses_watch_until', 'deposit_addresses', ['watch_until_ms'], unique=False)
    op.create_table(
        'deposit_history',
        sa.Column('id', _BigId, autoincrement=True, nullable=False),
        sa.Column('tx_id', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deposit_history')),
    )
    op.create_index('ix_deposit_history_tx', 'deposit_history', ['tx_id', 'id'], unique=False)
    op.create_table(
        'deposit_cursors',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('cursor_ms', sa.BigInteger(), nullable=False),
        sa.Column('updated_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_deposit_cursors')),
    )
    op.create_table(
        'deposit_rate_overrides',
        sa.Column('id', _BigId, autoincrement=True, nullable=False),
        sa.Column('rate', sa.String(length=40), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_deposit_rate_overrides')),
    )


def downgrade() -> None:
    op.drop_table('deposit_rate_overrides')
    op.drop_table('deposit_cursors')
    op.drop_index('ix_deposit_history_tx', table_name='deposit_history')
    op.drop_index('ix_deposit_addresses_watch_until', table_name='deposit_addresses')
    op.drop_index('ix_deposit_addresses_last_polled', table_name='deposit_addresses')
    op.drop_table('deposit_history')
    with op.batch_alter_table('deposit_transactions') as batch:
        batch.drop_column('failures')
