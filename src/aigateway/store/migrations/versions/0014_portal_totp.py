"""portal_totp, portal_recovery_codes, portal_pending_logins (customer TOTP two-factor)

Revision ID: 0014_portal_totp
Revises:
Depends on: 0001_core

Its own branch ('portal_totp'), so it never makes a second head beside other portal work.
"""
import sqlalchemy as sa
from alembic import op

revision = '0014_portal_totp'
down_revision = None
branch_labels = ('portal_totp',)
depends_on = '0001_core'


def upgrade() -> None:
    op.create_table(
        'portal_totp',
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('secret', sa.String(length=64), nullable=False),
        sa.Column('last_step', sa.Integer(), nullable=False),
        sa.Column('enabled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_portal_totp_customer_id_customers')),
        sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_portal_totp')),
    )
    op.create_table(
        'portal_recovery_codes',
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_portal_recovery_codes_customer_id_customers')),
        sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_portal_recovery_codes')),
    )
    op.create_index('ix_portal_recovery_codes_customer_id', 'portal_recovery_codes', ['customer_id'])
    op.create_table(
        'portal_pending_logins',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('target', sa.String(length=2000), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_portal_pending_logins_customer_id_customers')),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_portal_pending_logins')),
    )
    op.create_index('ix_portal_pending_logins_expires_at', 'portal_pending_logins', ['expires_at'])


def downgrade() -> None:
    op.drop_index('ix_portal_pending_logins_expires_at', table_name='portal_pending_logins')
    op.drop_table('portal_pending_logins')
    op.drop_index('ix_portal_recovery_codes_customer_id', table_name='portal_recovery_codes')
    op.drop_table('portal_recovery_codes')
    op.drop_table('portal_totp')
