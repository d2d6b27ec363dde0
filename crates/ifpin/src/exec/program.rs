//! Finding the program to run before anything is created, so "command not found" is a clear
//! error and not a half-built confinement.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ExecError;

/// A program resolved to an executable file, with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// What the user typed (becomes `argv[0]`).
    pub name: OsString,
    /// The executable file found for it.
    pub path: PathBuf,
    /// The arguments after the name.
    pub args: Vec<OsString>,
}

impl Program {
    /// Resolves `name` like a shell does: a name with a `/` is a path; otherwise the first
    /// executable regular file of that name in `$PATH` (or `/usr/local/bin:/usr/bin:/bin`).
    pub fn resolve(name: &OsStr, args: Vec<OsString>) -> Result<Program, ExecError> {
        let display = || name.to_string_lossy().into_owned();
        if name.is_empty() {
            return Err(ExecError::CommandNotFound {
                command: display(),
                reason: "the command is empty".into(),
            });
        }
        let path = if name.as_encoded_bytes().contains(&b'/') {
            let path = PathBuf::from(name);
            check_executable(&path).map_err(|reason| ExecError::CommandNotFound {
                command: display(),
                reason,
            })?;
            path
        } else {
            let search = std::env::var_os("PATH")
                .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
            let mut found = None;
            let mut not_executable = None;
            for dir in std::env::split_paths(&search) {
                let candidate = dir.join(name);
                match check_executable(&candidate) {
                    Ok(()) => {
                        found = Some(candidate);
                        break;
                    }
                    Err(reason) if candidate.exists() => not_executable = Some(reason),
                    Err(_) => {}
                }
            }
            found.ok_or_else(|| ExecError::CommandNotFound {
                command: display(),
                reason: not_executable
                    .unwrap_or_else(|| "not found in $PATH (give a path or fix $PATH)".into()),
            })?
        };
        Ok(Program {
            name: name.to_owned(),
            path,
            args,
        })
    }

    /// A `Command` for the program (argv\[0\] as typed).
    pub fn command(&self) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(&self.path);
        cmd.arg0(&self.name).args(&self.args);
        cmd
    }
}

fn check_executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "{} is not executable (chmod +x it)",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_in_path_and_by_path() {
        let sh = Program::resolve(OsStr::new("sh"), vec![]).unwrap();
        assert!(sh.path.is_absolute(), "{sh:?}");
        let by_path = Program::resolve(OsStr::new("/bin/sh"), vec!["-c".into()]).unwrap();
        assert_eq!(by_path.path, Path::new("/bin/sh"));
        assert_eq!(by_path.args, [OsString::from("-c")]);
    }

    #[test]
    fn missing_and_non_executable_programs_are_errors() {
        let plain = std::env::temp_dir().join(format!("ifpin-not-exec-{}", std::process::id()));
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let plain_str = plain.to_str().unwrap().to_owned();
        for bad in [
            "no-such-program-ifpin",
            "/no/such/file",
            &plain_str,
            "/etc",
            "",
        ] {
            let err = Program::resolve(OsStr::new(bad), vec![]).unwrap_err();
            assert!(
                matches!(err, ExecError::CommandNotFound { .. }),
                "{bad}: {err}"
            );
        }
        std::fs::remove_file(&plain).unwrap();
    }
}
