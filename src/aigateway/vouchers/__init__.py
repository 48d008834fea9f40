"""Prepaid voucher codes the operator sells for cash: a second way to top up."""
