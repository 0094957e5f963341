//! The `mmipc` command-line tool. For now it only reports its version; `pub`, `sub`, `ls`,
//! `clean` and `bench` arrive with the publish/subscribe layer.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("--version") | Some("-V") => {
            println!("mmipc {}", env!("CARGO_PKG_VERSION"));
        }
        Some(other) => {
            eprintln!("mmipc: unknown command `{other}`; only `--version` exists so far");
            std::process::exit(2);
        }
    }
}
