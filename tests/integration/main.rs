//! One integration-test binary (one shared PostgreSQL 18 for all of it);
//! each module is one area of behaviour.

mod cli;
mod entity;
mod migrations;
mod plans;
mod schema;
mod service;
