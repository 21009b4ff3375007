//! Serial ports (`[[serial]]`): an analyzer on an RS-232 line speaking ASTM
//! E1381. The port is opened with its configured settings and driven by the
//! same E1381 receiver as TCP; a hang-up (a read of 0 bytes), an unplugged
//! USB adapter or an open failure is logged and the port reopened with a
//! back-off: never a busy loop, never a crash of the other sources.

use tokio::sync::{mpsc, watch};
use tokio_serial::SerialPortBuilderExt;
use tracing::{error, info, warn};

use super::tcp::{SessionEnd, astm_session};
use crate::daemon::backoff::Backoff;
use crate::daemon::work::Work;
use crate::store::Source;
use crate::study::config::{FlowControl, Parity, SerialPort};

/// Serve one `[[serial]]` port until `stop` turns true.
pub async fn serve(
    port: SerialPort,
    settings: crate::astm::receiver::Config,
    tx: mpsc::Sender<Work>,
    mut stop: watch::Receiver<bool>,
) {
    let path = port.path.display().to_string();
    let mut backoff = Backoff::default();
    loop {
        match open(&port) {
            Ok(stream) => {
                info!(%path, baud = port.baud, instrument = %port.instrument, "serial port open");
                backoff.reset();
                let (reader, writer) = tokio::io::split(stream);
                let settings = settings.clone();
                match astm_session(
                    reader,
                    writer,
                    settings,
                    Source::Serial,
                    &path,
                    &port.instrument,
                    None,
                    &tx,
                    &mut stop,
                )
                .await
                {
                    SessionEnd::Stopped => return,
                    end => warn!(%path, "serial port closed ({end:?}); reopening"),
                }
            }
            Err(e) => error!(%path, error = %e, retry_in = ?backoff.delay(), "cannot open the serial port"),
        }
        if !backoff.wait(&mut stop).await {
            return;
        }
    }
}

fn open(port: &SerialPort) -> tokio_serial::Result<tokio_serial::SerialStream> {
    let path = port.path.to_string_lossy();
    tokio_serial::new(path.as_ref(), port.baud)
        .data_bits(if port.data_bits == 7 { tokio_serial::DataBits::Seven } else { tokio_serial::DataBits::Eight })
        .parity(match port.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .stop_bits(if port.stop_bits == 2 { tokio_serial::StopBits::Two } else { tokio_serial::StopBits::One })
        .flow_control(match port.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::Software => tokio_serial::FlowControl::Software,
            FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        })
        .open_native_async()
}
