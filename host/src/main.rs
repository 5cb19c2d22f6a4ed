//! The `todo-host` binary: parse flags, take any sockets a parent handed down, start the server,
//! print the start-up line, serve until SIGINT, SIGTERM or `--idle-exit`. Everything else is in
//! the library.

use std::process::ExitCode;

use clap::Parser;
use todo_host::activation::{self, Inherited};
use todo_host::config::Cli;
use todo_host::{App, Config, Server, server};

// mimalloc rather than glibc's malloc: a request makes over a hundred small host allocations
// (wasmtime's instantiation, the `wasi:http` resources, the key-value answers). Side by side,
// the server spent 6% less CPU per `GET /todos` and 2% less per `GET /todos/1` (bench/steps.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread starts (the log flusher is one): taking the sockets edits the
    // environment (`LISTEN_FDS`, `LISTEN_PID`).
    let inherited = match activation::inherited() {
        Ok(inherited) => inherited,
        Err(err) => {
            eprintln!("todo-host: socket activation: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // Kept to the end of `main`: dropping it writes out the access lines still waiting.
    let _logs = todo_host::logging::init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = cli.workers {
        runtime.worker_threads(usize::from(workers));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("todo-host: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Config::from(cli), inherited)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain of causes on one line, and no backtrace: this is for a user.
            eprintln!("todo-host: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, inherited: Option<Inherited>) -> anyhow::Result<()> {
    let app = App::from_config(&config).await?;
    let server = Server::start(&config, &app, inherited).await?;
    // Signal handlers first: a script may signal as soon as it reads the start-up line.
    let shutdown = server::shutdown_signal();
    // Tests and scripts read this line (on stdout) to learn the address.
    let banner = server.banner()?;
    println!("{banner}");
    activation::notify_ready(&banner);
    server.run(shutdown).await?;
    Ok(())
}
