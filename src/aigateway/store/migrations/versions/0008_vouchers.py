"""vouchers: batches, hashed codes, operator audit

Revision ID: 0008_vouchers
Revises:
Depends on: 0001_core
"""
import sqlalchemy as sa
from alembic import op

revision = '0008_vouchers'
down_revision = None
branch_labels = ('vouchers',)
depends_on = '0001_core'

_BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'voucher_batches',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('label', sa.String(length=120), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_voucher_batches')),
    )
    op.create_table(
        'vouchers',
        sa.Column('id', _BigId, autoincrement=True, nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('redeemed_by', sa.Integer(), nullable=True),
        sa.Column('redeemed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['batch_id'], ['voucher_batches.id'],
                                name=op.f('fk_vouchers_batch_id_voucher_batches')),
        sa.ForeignKeyConstraint(['redeemed_by'], ['customers.id'],
                                name=op.f('fk_vouchers_redeemed_by_customers')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_vouchers')),
        sa.UniqueConstraint('code_hash', name=op.f('uq_vouchers_code_hash')),
    )
    op.create_index(op.f('ix_vouchers_batch_id'), 'vouchers', ['batch_id'])
    op.create_index('ix_vouchers_redeemed_by', 'vouchers', ['redeemed_by'])
    op.create_table(
        'voucher_audit',
        sa.Column('id', _BigId, autoincrement=True, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('action', sa.String(length=40), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_voucher_audit')),
    )


def downgrade() -> None:
    op.drop_table('voucher_audit')
    op.drop_index('ix_vouchers_redeemed_by', table_name='vouchers')
    op.drop_index(op.f('ix_vouchers_batch_id'), table_name='vouchers')
    op.drop_table('vouchers')
    op.drop_table('voucher_batches')
