use clap::Parser as _;
use filter_ctl::{
    cli::Cli,
    error,
    service::ops::{ErrorKind, OpError},
};

fn main() -> std::process::ExitCode {
    // Die quietly on a closed pipe (`filter-ctl list | head`) like other
    // command-line tools, instead of panicking in println!.
    // SAFETY: setting a signal disposition to its default is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.execute() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the causes joined, then a hint where one helps.
            let mut line = format!("error: {e:#}");
            let denied = e
                .downcast_ref::<OpError>()
                .is_some_and(|o| o.kind == ErrorKind::Denied);
            if denied || error::is_permission_error(&e) {
                line.push_str(&format!(" ({})", error::PRIVILEGE_HINT));
            }
            eprintln!("{line}");
            std::process::ExitCode::FAILURE
        }
    }
}
