mod service;

fn main() {}
