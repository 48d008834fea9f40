"""portal tables: login sessions and failed-login counters

Revision ID: 0004_portal
Revises:
Depends on: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = '0004_portal'
down_revision = None
branch_labels = ('portal',)
depends_on = '0001_core'


def upgrade() -> None:
    op.create_table(
        'portal_sessions',
        sa.Column('id_hash', sa.String(length=64), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_portal_sessions_customer_id_customers')),
        sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_portal_sessions')),
    )
    op.create_index(op.f('ix_portal_sessions_customer_id'), 'portal_sessions', ['customer_id'])
    op.create_index('ix_portal_sessions_expires_at', 'portal_sessions', ['expires_at'])

    op.create_table(
        'portal_login_failures',
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_failed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key_hash', name=op.f('pk_portal_login_failures')),
    )
    op.create_index('ix_portal_login_failures_last_failed_at', 'portal_login_failures', ['last_failed_at'])


def downgrade() -> None:
    op.drop_index('ix_portal_login_failures_last_failed_at', table_name='portal_login_failures')
    op.drop_table('portal_login_failures')
    op.drop_index('ix_portal_sessions_expires_at', table_name='portal_sessions')
    op.drop_index(op.f('ix_portal_sessions_customer_id'), table_name='portal_sessions')
    op.drop_table('portal_sessions')
