//! `spate` binary: thin wrapper over the `spate_engine` library.
fn main() {
    eprintln!("spate: the engine is not built yet (see issue 3)");
    std::process::exit(2);
}
