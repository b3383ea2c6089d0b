//! The settlement ledger: pure logic over `SettlementSpec` values, no I/O. [`emission`]
//! is the pool's schedule, [`rewards`] splits an epoch's emission, [`accounts`] folds the
//! chain into balances and checks its sums, [`settle`] builds the records, [`chain`]
//! checks their hashes.

pub mod accounts;
pub mod chain;
pub mod emission;
pub mod reconcile;
pub mod rewards;
pub mod settle;
pub mod work;
