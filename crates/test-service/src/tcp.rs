//! The TCP side: a greeting with the instance name, then an echo.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

pub async fn serve(listener: TcpListener, name: Arc<str>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(greet_and_echo(stream, name.clone()));
    }
}

/// Errors end only this connection (a peer that resets is normal here).
async fn greet_and_echo(mut stream: TcpStream, name: Arc<str>) {
    if stream.write_all(format!("{name}\n").as_bytes()).await.is_err() {
        return;
    }
    let (mut reader, mut writer) = stream.split();
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
    let _ = writer.shutdown().await;
}
