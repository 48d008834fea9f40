"""TOTP seed columns wide enough for an encrypted seed (twofactor.seeds)

Revision ID: 0016_totp_seeds_sealed
Revises:
Depends on: 0011_console, 0014_portal_totp

Its own branch ('totp_seeds'). Only the column width changes here: existing plain seeds keep
working and are encrypted at start-up once AIGATEWAY_SECRET_KEY is set (the key is not
something a migration should need).
"""
import sqlalchemy as sa
from alembic import op

revision = '0016_totp_seeds_sealed'
down_revision = None
branch_labels = ('totp_seeds',)
depends_on = ('0011_console', '0014_portal_totp')


def upgrade() -> None:
    with op.batch_alter_table('console_operators') as batch:
        batch.alter_column('totp_secret', existing_type=sa.String(length=64), type_=sa.String(length=200),
                           existing_nullable=False)
    with op.batch_alter_table('portal_totp') as batch:
        batch.alter_column('secret', existing_type=sa.String(length=64), type_=sa.String(length=200),
                           existing_nullable=False)


def downgrade() -> None:
    # Only valid while the seeds are plain (an encrypted seed is longer than 64 characters).
    with op.batch_alter_table('portal_totp') as batch:
        batch.alter_column('secret', existing_type=sa.String(length=200), type_=sa.String(length=64),
                           existing_nullable=False)
    with op.batch_alter_table('console_operators') as batch:
        batch.alter_column('totp_secret', existing_type=sa.String(length=200), type_=sa.String(length=64),
                           existing_nullable=False)
