"""portal_flash: a session's one-time message (a new API key shown once after a redirect)

Revision ID: 0004_portal_flash
Revises: 0004_portal
"""
import sqlalchemy as sa
from alembic import op

revision = '0004_portal_flash'
down_revision = '0004_portal'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'portal_flash',
        sa.Column('session_hash', sa.String(length=64), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('session_hash', name=op.f('pk_portal_flash')),
    )
    op.create_index('ix_portal_flash_created_at', 'portal_flash', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_portal_flash_created_at', table_name='portal_flash')
    op.drop_table('portal_flash')
