//! Read-only views over the stored history, for people: the account book,
//! the monthly review, the daemon's status, the backtest and the rule
//! benchmark. They read the store and run the rules; they record nothing and
//! send nothing (the review's `--send` hands its mail to the mail stage).

pub mod accounts;
pub mod backtest;
pub mod bench;
pub mod review;
pub mod status;
