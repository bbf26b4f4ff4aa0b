//! `completions` and `manpage`: the shell completions and the man page,
//! made from this binary's own command-line definition, so they cannot
//! drift from `--help`.

use std::io::Write as _;

use clap::{Args, CommandFactory as _};

use super::{Cli, Global};

/// Print shell completions for filter-ctl.
///
/// Example (bash): filter-ctl completions bash >
/// /usr/share/bash-completion/completions/filter-ctl
#[derive(Debug, Args)]
pub struct Completions {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

impl Completions {
    pub fn execute(self, _g: &Global) -> anyhow::Result<()> {
        let mut cmd = Cli::command();
        clap_complete::generate(self.shell, &mut cmd, "filter-ctl", &mut std::io::stdout());
        Ok(())
    }
}

/// Print the man page (roff, section 8): the options, and every verb with
/// its summary (`filter-ctl VERB --help` has the rest).
///
/// Example: filter-ctl manpage > /usr/share/man/man8/filter-ctl.8
#[derive(Debug, Args)]
pub struct Manpage {}

impl Manpage {
    pub fn execute(self, _g: &Global) -> anyhow::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .section("8")
            .render(&mut out)?;
        std::io::stdout().write_all(&out)?;
        Ok(())
    }
}
