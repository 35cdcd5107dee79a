//! The doctor's report: one line per check as it is made (text, or a JSON object a line), and the exit status.

use crate::output::{Failure, Output};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    Fail,
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// The checks' lines, printed as they are made.
pub(super) struct Report {
    pub(super) out: Output,
    pub(super) failed: usize,
}

impl Report {
    fn line(&mut self, check: &str, status: Status, detail: &str, fix: Option<&str>) {
        self.failed += usize::from(status == Status::Fail);
        match self.out {
            Output::Text => {
                println!("{:<4} {check}: {detail}", status.as_str());
                if let Some(fix) = fix {
                    println!("     fix: {fix}");
                }
            }
            Output::Json => println!(
                "{}",
                serde_json::json!({
                    "check": check,
                    "status": status.as_str(),
                    "detail": detail,
                    "fix": fix,
                })
            ),
        }
    }
    pub(super) fn ok(&mut self, check: &str, detail: &str) {
        self.line(check, Status::Ok, detail, None);
    }
    pub(super) fn fail(&mut self, check: &str, detail: &str, fix: &str) {
        self.line(check, Status::Fail, detail, Some(fix));
    }
    pub(super) fn skip(&mut self, check: &str, detail: &str) {
        self.line(check, Status::Skip, detail, None);
    }
}

pub(super) fn finish(report: Report) -> Result<(), Failure> {
    match report.failed {
        0 => Ok(()),
        1 => Err(Failure::Other("1 check failed".into())),
        n => Err(Failure::Other(format!("{n} checks failed"))),
    }
}
