"""portal_tokens (hashed one-time e-mail links) and portal_verified_emails

Revision ID: 0013_portal_tokens
Revises:
Depends on: 0001_core

Its own branch ('portal_mail'), so it never makes a second head beside other portal work.
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_portal_tokens'
down_revision = None
branch_labels = ('portal_mail',)
depends_on = '0001_core'


def upgrade() -> None:
    op.create_table(
        'portal_tokens',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('purpose', sa.String(length=20), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_portal_tokens_customer_id_customers')),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_portal_tokens')),
    )
    op.create_index('ix_portal_tokens_customer_id', 'portal_tokens', ['customer_id'])
    op.create_index('ix_portal_tokens_expires_at', 'portal_tokens', ['expires_at'])
    op.create_table(
        'portal_verified_emails',
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('verified_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'],
                                name=op.f('fk_portal_verified_emails_customer_id_customers')),
        sa.PrimaryKeyConstraint('customer_id', 'email', name=op.f('pk_portal_verified_emails')),
    )


def downgrade() -> None:
    op.drop_table('portal_verified_emails')
    op.drop_index('ix_portal_tokens_expires_at', table_name='portal_tokens')
    op.drop_index('ix_portal_tokens_customer_id', table_name='portal_tokens')
    op.drop_table('portal_tokens')
