//! `hoopctl watch`: the live event stream (session starts and ends, statements), JSON lines.

use std::process::ExitCode;

use hoop_userspace::control::{Request, client::Client};

pub fn run(client: &mut Client) -> Result<ExitCode, String> {
    client.call(&Request::Watch)?;
    loop {
        println!("{}", client.read_response()?);
    }
}
