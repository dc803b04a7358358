//! Zero-copy blob bodies: `sendfile(2)` underneath hyper.
//!
//! hyper writes a body through its connection's `poll_write_vectored` and has no sendfile
//! path. Blob bodies are therefore memory mappings of the blob file ([`map_file`]), and each
//! mapping is recorded in a process-wide table. [`SendfileStream`], the plain-TCP connection
//! type, looks up every large slice hyper hands it: a slice that lies inside a recorded
//! mapping is sent with `sendfile` from the file at the matching offset, which is the same
//! bytes (blobs are immutable: replaced only by rename or removed by unlink, never written
//! in place or truncated), so HTTP framing, Range slices and keep-alive stay hyper's. The
//! kernel then moves page-cache pages to the socket without a copy through user space.
//! Under TLS the mapping is read like any buffer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Slices smaller than this go through `writev`: a table lookup and a second syscall are
/// not worth it for them (headers, small Range reads).
const MIN_SENDFILE: usize = 64 * 1024;
/// One `sendfile` call's limit (Linux sends at most 0x7ffff000 bytes per call anyway).
const MAX_SENDFILE: usize = 1 << 30;

/// Start address -> (length, file) of every live blob mapping.
type Table = RwLock<BTreeMap<usize, (usize, Arc<File>)>>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(Table::default)
}

/// Owns a mapping and its file; removes itself from the table when the last `Bytes` goes.
struct Mapped {
    map: memmap2::Mmap,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        table().write().unwrap_or_else(|e| e.into_inner()).remove(&(self.map.as_ptr() as usize));
    }
}

/// Maps a blob file read-only as `Bytes` that [`SendfileStream`] sends with `sendfile`.
///
/// The caller guarantees the file is never modified or truncated while mapped (the
/// registry's blobs are immutable; see the module documentation).
pub fn map_file(file: File) -> io::Result<Bytes> {
    // SAFETY: blob files are only ever created whole (rename) and removed (unlink); no one
    // writes or truncates them, so the mapped bytes cannot change or vanish under us.
    // Populated up front: the writev path reads it all, and the storage keeps recent
    // mappings, so the page-table work is paid once per blob rather than per request.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }?;
    let (start, len) = (map.as_ptr() as usize, map.len());
    table().write().unwrap_or_else(|e| e.into_inner()).insert(start, (len, Arc::new(file)));
    Ok(Bytes::from_owner(Mapped { map }))
}

/// The file and offset holding `slice`, when it lies wholly inside a recorded mapping.
fn lookup(slice: &[u8]) -> Option<(Arc<File>, u64)> {
    let p = slice.as_ptr() as usize;
    let t = table().read().unwrap_or_else(|e| e.into_inner());
    let (&start, (len, file)) = t.range(..=p).next_back()?;
    (p + slice.len() <= start + len).then(|| (file.clone(), (p - start) as u64))
}

/// A plain TCP connection whose writes of mapped blob bytes become `sendfile` calls when
/// `sendfile` is on; otherwise (the default) every write is a `writev`, which copies from
/// the mapping once. Over loopback, where the receiver copies anyway, that measured faster
/// (bench/registry/run.sh); over a real NIC sendfile saves the copy.
pub struct SendfileStream {
    pub stream: TcpStream,
    pub sendfile: bool,
}

impl SendfileStream {
    /// Sends `len` bytes of `file` from `offset`, waiting for the socket as tokio does.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let sock = self.stream.as_raw_fd();
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            let r = self.stream.try_io(Interest::WRITABLE, || {
                let mut off = offset as libc::off_t;
                // SAFETY: both descriptors are open for the duration of the call and `off`
                // is a valid pointer; the socket is non-blocking.
                let n = unsafe {
                    libc::sendfile(sock, file.as_raw_fd(), &mut off, len.min(MAX_SENDFILE))
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    /// `writev` of `bufs`; `more` tells the kernel more data follows at once (MSG_MORE), so
    /// response headers leave in the same segment as the body's first bytes.
    fn poll_sendmsg(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        more: bool,
    ) -> Poll<io::Result<usize>> {
        let sock = self.stream.as_raw_fd();
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            let r = self.stream.try_io(Interest::WRITABLE, || {
                // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the msghdr points
                // at `bufs`, which outlives the call.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
                let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
                // SAFETY: as above.
                let n = unsafe { libc::sendmsg(sock, &msg, flags) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = {
            let skip = bufs.iter().take_while(|b| b.is_empty()).count();
            &bufs[skip..]
        };
        if bufs.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !self.sendfile {
            return self.poll_sendmsg(cx, bufs, false);
        }
        // The first large mapped slice: everything before it goes by writev, it by sendfile.
        let mapped = bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= MIN_SENDFILE)
            .find_map(|(i, b)| lookup(b).map(|(f, off)| (i, f, off)));
        match mapped {
            Some((0, file, off)) => self.poll_sendfile(cx, &file, off, bufs[0].len()),
            Some((i, ..)) => self.poll_sendmsg(cx, &bufs[..i], true),
            None => self.poll_sendmsg(cx, bufs, false),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use tokio::io::AsyncWriteExt;

    /// Headers, a mapped body sent by sendfile (whole and a sub-slice), and plain bytes
    /// arrive in order and intact.
    #[test]
    fn mapped_slices_are_sent_with_sendfile_and_arrive_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path).unwrap().write_all(&data).unwrap();
        let bytes = map_file(File::open(&path).unwrap()).unwrap();
        assert!(lookup(&bytes[100..200_000]).is_some_and(|(_, off)| off == 100));
        assert!(lookup(&data[..]).is_none());

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let body = bytes.slice(1000..2_500_000);
        rt.block_on(async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut s = SendfileStream { stream, sendfile: true };
            // As hyper does: all queued buffers at once, advancing by what was written.
            let mut parts: std::collections::VecDeque<Bytes> =
                [Bytes::from_static(b"HEAD\r\n"), bytes.clone(), body.clone(), "tail".into()]
                    .into();
            while !parts.is_empty() {
                let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                let mut n = s.write_vectored(&iov).await.unwrap();
                assert!(n > 0);
                while n > 0 {
                    let k = n.min(parts[0].len());
                    bytes::Buf::advance(&mut parts[0], k);
                    n -= k;
                    if parts[0].is_empty() {
                        parts.pop_front();
                    }
                }
            }
            s.shutdown().await.unwrap();
        });
        let got = reader.join().unwrap();
        let mut want = b"HEAD\r\n".to_vec();
        want.extend_from_slice(&data);
        want.extend_from_slice(&data[1000..2_500_000]);
        want.extend_from_slice(b"tail");
        assert!(got == want, "received {} bytes, want {}", got.len(), want.len());
        let start = bytes.as_ptr() as usize;
        drop((bytes, body));
        assert!(
            !table().read().unwrap().contains_key(&start),
            "a dropped mapping leaves the table"
        );
    }
}
