mod entity;
fn main() {}
