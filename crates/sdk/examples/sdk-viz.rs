//! A minimal visualization for `[ipc] transport = "fd"`: prints every message vitrine delivers,
//! one per line, and answers `/ping` with `/pong` (feedback). Exits when vitrine closes the fd.

use std::io::Write;

fn main() -> Result<(), vitrine_sdk::Error> {
    let mut osc = vitrine_sdk::Receiver::from_env()?;
    let stdout = std::io::stdout();
    println!("sdk-viz: waiting for OSC");
    while let Some(message) = osc.recv()? {
        let mut out = stdout.lock();
        let _ = writeln!(out, "{message}");
        let _ = out.flush();
        if message.address == "/ping" {
            osc.send("/pong", &[])?;
        }
    }
    println!("sdk-viz: channel closed");
    Ok(())
}
