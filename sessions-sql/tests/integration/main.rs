//! sessionkit-sql against real databases: SQLite in memory and in a temp file, the PostgreSQL at
//! `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and the MariaDB/MySQL at
//! `MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`). Each test uses a table of its own,
//! dropped when it ends. Without a database feature there is nothing to test.
#![cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]

mod behaviour;
mod cleanup;
mod common;
mod conformance;
mod faults;
mod round_trips;
mod users;
