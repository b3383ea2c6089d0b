//! The settlement ledger: pure logic over `SettlementSpec` values, no I/O.

pub mod chain;
