use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::Global;
use crate::policy::{Policy, DEFAULT_POLICY};

/// Check a policy file, or print the default policy.
///
/// Example: filter-ctl policy defaults > /etc/filter/policy.yaml
#[derive(Debug, Args)]
pub struct PolicyCmd {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Validate a policy file without touching anything.
    Check {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the complete default policy, with comments.
    Defaults,
}

impl PolicyCmd {
    pub fn execute(self, _g: &Global) -> anyhow::Result<()> {
        match self.what {
            What::Check { file } => {
                let p = Policy::load(&file)?;
                println!(
                    "{}: valid ({} interface(s), interval {}, {} allow and {} block entries)",
                    file.display(),
                    p.interfaces.len(),
                    p.interval,
                    p.allow.len(),
                    p.block.len()
                );
                Ok(())
            }
            What::Defaults => {
                print!("{DEFAULT_POLICY}");
                Ok(())
            }
        }
    }
}
