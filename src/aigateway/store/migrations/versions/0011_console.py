"""console: operators, their sessions and recovery codes, audit log

Revision ID: 0011_console
Revises:
Depends on: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = '0011_console'
down_revision = None
branch_labels = ('console',)
depends_on = '0001_core'

_BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'console_operators',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('password_hash', sa.String(length=200), nullable=True),
        sa.Column('totp_secret', sa.String(length=64), nullable=False),
        sa.Column('totp_last_step', sa.Integer(), nullable=False),
        sa.Column('enrol_token_hash', sa.String(length=64), nullable=True),
        sa.Column('enrol_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_operators')),
        sa.UniqueConstraint('email', name=op.f('uq_console_operators_email')),
        sa.UniqueConstraint('enrol_token_hash', name=op.f('uq_console_operators_enrol_token_hash')),
    )
    op.create_table(
        'console_recovery_codes',
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('operator_id', sa.Integer(), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['operator_id'], ['console_operators.id'],
                                name=op.f('fk_console_recovery_codes_operator_id_console_operators')),
        sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_console_recovery_codes')),
    )
    op.create_index(op.f('ix_console_recovery_codes_operator_id'), 'console_recovery_codes', ['operator_id'])
    op.create_table(
        'console_sessions',
        sa.Column('id_hash', sa.String(length=64), nullable=False),
        sa.Column('operator_id', sa.Integer(), nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['operator_id'], ['console_operators.id'],
                                name=op.f('fk_console_sessions_operator_id_console_operators')),
        sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_console_sessions')),
    )
    op.create_index(op.f('ix_console_sessions_operator_id'), 'console_sessions', ['operator_id'])
    op.create_table(
        'console_audit_log',
        sa.Column('id', _BigId, autoincrement=True, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=340), nullable=False),
        sa.Column('action', sa.String(length=60), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=True),
        sa.Column('before', sa.Text(), nullable=True),
        sa.Column('after', sa.Text(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_audit_log')),
    )
    op.create_index('ix_console_audit_log_at', 'console_audit_log', ['at'])


def downgrade() -> None:
    op.drop_table('console_audit_log')
    op.drop_table('console_sessions')
    op.drop_table('console_recovery_codes')
    op.drop_table('console_operators')
