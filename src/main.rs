//! `qga`: see the library's `startup` for the one start-up path.

fn main() {
    std::process::exit(qga::main());
}
