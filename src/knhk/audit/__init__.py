"""The audit log (SPEC §9): who did what, recorded in the ledger's ``audit`` log under pseudonyms."""
