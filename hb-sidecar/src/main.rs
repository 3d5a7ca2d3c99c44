/*!
`mosaic-hb`: watch a process and keep its heartbeat file current; or, with `status`, report a
directory of heartbeat files. The command line lives in the library ([`mosaic_hb::cli`]), so the
modules it drives stay private to it; see the crate doc for the theory of operation.
*/

// The binary shares its package's dependency list with the library, where the lint does its
// job; here it would only flag the library's dependencies (rustc checks each target against
// the whole list: rust-lang/rust#95513), and Cargo has no per-target dependencies.
#![allow(unused_crate_dependencies)]

fn main() -> std::process::ExitCode {
    mosaic_hb::cli::main()
}
