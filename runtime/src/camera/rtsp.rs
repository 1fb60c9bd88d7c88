//! `rtsp://[USER:PASSWORD@]HOST[:PORT]/PATH`: an IP camera's stream, received and decoded in
//! the process — no GStreamer, no ffmpeg (cargo feature `rtsp`, on by default).
//!
//! - **Protocol:** [`retina`] speaks RTSP and depacketizes RTP, interleaved on the RTSP TCP
//!   connection (what passes firewalls and NAT, and loses no packet to a busy receiver). The
//!   password travels only as RTSP authentication (basic or digest, as the camera asks): it
//!   is taken out of the URL before anything is sent or shown, and the source shows the URL
//!   with `***` ([`crate::redact`]).
//! - **Codecs:** H.264 is decoded by Cisco's OpenH264 ([`openh264`], built from source, its
//!   NEON and x86 assembly included), into I420 at the stream's own size; the pipeline
//!   scales it to the model. RTP/JPEG (RFC 2435) frames are handed on as MJPEG. Any other
//!   codec (H.265, MPEG-4) is a clear error naming it: those cameras come in through the
//!   GStreamer `cmd:` recipes of `docs/cameras.md`, with the board's hardware decoder.
//! - **Newest frame:** every H.264 frame must be decoded (the next one refers to it), so the
//!   source decodes at the stream's rate on the capture thread; the pipeline's mailbox hands
//!   inference the newest decoded frame and drops the ones it overtook. After a (re)connect,
//!   frames are skipped until the first key frame, and a frame the decoder refuses is
//!   skipped and counted until the next key frame: no half-grey picture reaches a model.
//! - **Reconnects:** a connection that fails, closes, or stays silent for [`STALL`] is
//!   reopened after the same backoff as `cmd:` (100 ms doubling up to 5 s, reset by a
//!   frame); reconnects and the time without frames are counted, the frame numbers keep
//!   rising. With `--exit-on-source-error` the first failure ends the run instead.
//!
//! Allocation: the I420 frame buffer is kept and grows only when the stream's size does.
//! retina allocates each depacketized frame (it hands out owned `Vec`s); that is the one
//! per-frame allocation of this source.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use openh264::formats::YUVSource;
use retina::client::{
    Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tokio::sync::Notify;

use super::stream::{find_jpeg, Scan};
use super::{
    Backoff, CameraError, Frame, FrameSource, Interrupt, PixelFormat, SourceCounters, SourceOptions,
};

/// A connection that delivers no frame for this long is closed and opened again.
pub const STALL: Duration = Duration::from_secs(10);

/// How long DESCRIBE, SETUP and PLAY may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The codecs this source decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    H264,
    Jpeg,
}

/// What the interrupter shares with the source.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    wake: Notify,
}

/// A playing session.
struct Playing {
    demuxed: Demuxed,
    codec: Codec,
    /// H.264 frames are skipped until a key frame (after a connect or a refused frame).
    want_key: bool,
}

/// An RTSP camera.
pub struct RtspSource {
    uri: String,
    url: url::Url,
    credentials: Option<Credentials>,
    runtime: tokio::runtime::Runtime,
    session: Option<Playing>,
    decoder: Option<openh264::decoder::Decoder>,
    /// The frame lent out: I420 planes, tight rows, or one JPEG.
    buffer: Vec<u8>,
    width: usize,
    height: usize,
    format: PixelFormat,
    seq: u64,
    backoff: Backoff,
    counters: SourceCounters,
    outage_since: Option<Instant>,
    /// Frames the decoder refused (logged at the first of each run of them).
    refused: u64,
    /// Whether a connection was tried before: every later attempt is a reconnect.
    tried: bool,
    exit_on_error: bool,
    stop: Arc<Stop>,
}

/// Why a session ended or could not start.
enum Lost {
    /// The user's to fix (a codec this source cannot decode): not retried.
    Unsupported(String),
    /// The network's or the camera's: reconnect.
    Failed(String),
    /// The interrupter stopped the source.
    Stopped,
}

impl RtspSource {
    /// Opens `raw` (the whole `rtsp://…` URI, password included) and connects. `uri` is what
    /// the source shows. A connection that fails at start is retried like a lost one (the
    /// camera may still be booting), unless `--exit-on-source-error`.
    pub fn open(uri: &str, raw: &str, options: &SourceOptions) -> Result<RtspSource, CameraError> {
        let bad = |reason: String| CameraError::BadUri {
            uri: uri.into(),
            reason,
        };
        let mut url = url::Url::parse(raw).map_err(|e| bad(format!("not a URL: {e}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host".into()));
        }
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let credentials = Credentials {
                username: decode(url.username()),
                password: decode(url.password().unwrap_or("")),
            };
            // Sent as RTSP authentication only: the URL in requests carries none.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(credentials)
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CameraError::Capture {
                uri: uri.into(),
                reason: format!("cannot start the network runtime: {e}"),
            })?;
        let mut source = RtspSource {
            uri: uri.into(),
            url,
            credentials,
            runtime,
            session: None,
            decoder: None,
            buffer: Vec::new(),
            width: 0,
            height: 0,
            format: PixelFormat::I420,
            seq: 0,
            backoff: Backoff::new(),
            counters: SourceCounters::default(),
            outage_since: None,
            refused: 0,
            tried: false,
            exit_on_error: options.exit_on_error,
            stop: Arc::default(),
        };
        // The first connection is made here so that an unsupported codec is a start error.
        match source.connect() {
            Ok(()) => {}
            Err(Lost::Unsupported(reason)) => return Err(bad(reason)),
            Err(Lost::Failed(reason)) if source.exit_on_error => {
                return Err(source.capture_error(reason));
            }
            Err(Lost::Failed(reason)) => source.lose(&reason),
            Err(Lost::Stopped) => {}
        }
        Ok(source)
    }

    fn capture_error(&self, reason: String) -> CameraError {
        CameraError::Capture {
            uri: self.uri.clone(),
            reason,
        }
    }

    /// Runs `future` on the source's runtime; `None` when the interrupter stops it first.
    fn run<T>(&self, limit: Duration, future: impl Future<Output = T>) -> Option<Result<T, ()>> {
        let stop = self.stop.clone();
        self.runtime.block_on(async move {
            tokio::select! {
                _ = stop.wake.notified() => None,
                out = tokio::time::timeout(limit, future) => Some(out.map_err(|_| ())),
            }
        })
    }

    /// DESCRIBE, SETUP of the first video stream, PLAY.
    fn connect(&mut self) -> Result<(), Lost> {
        if self.stop.stopped.load(Ordering::Acquire) {
            return Err(Lost::Stopped);
        }
        if self.tried {
            self.counters.reconnects += 1;
        }
        self.tried = true;
        let (url, credentials) = (self.url.clone(), self.credentials.clone());
        let started = self.run(CONNECT_TIMEOUT, async move {
            let options = SessionOptions::default()
                .creds(credentials)
                .user_agent(format!("kestrel/{}", env!("CARGO_PKG_VERSION")));
            let mut session = Session::describe(url, options).await.map_err(failed)?;
            let video = session
                .streams()
                .iter()
                .position(|s| s.media() == "video")
                .ok_or_else(|| Lost::Unsupported("the stream has no video track".into()))?;
            let codec = match session.streams()[video].encoding_name() {
                "h264" => Codec::H264,
                "jpeg" => Codec::Jpeg,
                other => {
                    return Err(Lost::Unsupported(format!(
                        "the camera sends {}: rtsp:// decodes H.264 and JPEG; for other \
                         codecs use a cmd: GStreamer pipeline (docs/cameras.md)",
                        other.to_ascii_uppercase()
                    )))
                }
            };
            let setup = SetupOptions::default()
                .transport(Transport::Tcp(Default::default()))
                .frame_format(FrameFormat::SIMPLE);
            session.setup(video, setup).await.map_err(failed)?;
            let playing = session.play(PlayOptions::default()).await.map_err(failed)?;
            let demuxed = playing.demuxed().map_err(failed)?;
            Ok((demuxed, video, codec))
        });
        let (demuxed, video, codec) = match started {
            None => return Err(Lost::Stopped),
            Some(Err(())) => {
                return Err(Lost::Failed(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
            Some(Ok(result)) => result?,
        };
        let mut playing = Playing {
            demuxed,
            codec,
            want_key: true,
        };
        if codec == Codec::H264 {
            // A fresh decoder per connection: the new stream may have other parameters.
            let mut decoder = openh264::decoder::Decoder::new()
                .map_err(|e| Lost::Failed(format!("cannot start the H.264 decoder: {e}")))?;
            // The SDP's parameter sets (Annex B, as FrameFormat::SIMPLE asks), so that the
            // first key frame decodes even if the camera repeats them only rarely.
            if let Some(ParametersRef::Video(v)) = playing.demuxed.streams()[video].parameters() {
                if let Err(e) = decoder.decode(v.extra_data()) {
                    log::debug!("source '{}': SDP parameter sets: {e}", self.uri);
                }
            }
            self.decoder = Some(decoder);
            playing.want_key = true;
        }
        log::info!(
            "source '{}': playing ({})",
            self.uri,
            match codec {
                Codec::H264 => "H.264",
                Codec::Jpeg => "JPEG",
            }
        );
        self.session = Some(playing);
        Ok(())
    }

    /// Closes the session (inside the runtime: retina tears down in a task of it).
    fn close(&mut self) {
        let _guard = self.runtime.enter();
        self.session = None;
    }

    /// A connection that failed or ended: counted, logged, and waited for.
    fn lose(&mut self, reason: &str) {
        self.close();
        self.outage_since.get_or_insert_with(Instant::now);
        let delay = self.backoff.next_delay();
        log::warn!(
            "source '{}': {}; reconnecting in {} ms",
            self.uri,
            crate::redact::redact(reason),
            delay.as_millis()
        );
        let stop = self.stop.clone();
        self.runtime.block_on(async move {
            tokio::select! {
                _ = stop.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        });
    }

    /// The next frame of the playing session into `buffer`: `Ok(true)` a frame, `Ok(false)`
    /// an item that is not one (audio, RTCP, a skipped frame).
    fn pull(&mut self) -> Result<bool, Lost> {
        let Some(playing) = self.session.as_mut() else {
            return Err(Lost::Failed("not connected".into()));
        };
        let stop = self.stop.clone();
        let demuxed = &mut playing.demuxed;
        let item = self.runtime.block_on(async move {
            tokio::select! {
                _ = stop.wake.notified() => None,
                out = tokio::time::timeout(STALL, demuxed.next()) => Some(out),
            }
        });
        let frame = match item {
            None => return Err(Lost::Stopped),
            Some(Err(_)) => {
                return Err(Lost::Failed(format!("no frame for {} s", STALL.as_secs())))
            }
            Some(Ok(None)) => return Err(Lost::Failed("the server ended the stream".into())),
            Some(Ok(Some(Err(e)))) => return Err(failed(e)),
            Some(Ok(Some(Ok(CodecItem::VideoFrame(frame))))) => frame,
            Some(Ok(Some(Ok(_)))) => return Ok(false),
        };
        match playing.codec {
            Codec::Jpeg => match find_jpeg(frame.data()) {
                Scan::Found { skip, len, size } => {
                    self.buffer.clear();
                    self.buffer
                        .extend_from_slice(&frame.data()[skip..skip + len]);
                    (self.width, self.height) = size;
                    self.format = PixelFormat::Mjpeg;
                    Ok(true)
                }
                _ => {
                    log::debug!("source '{}': a JPEG frame without its image", self.uri);
                    Ok(false)
                }
            },
            Codec::H264 => {
                if playing.want_key && !frame.is_random_access_point() {
                    return Ok(false);
                }
                let decoder = self
                    .decoder
                    .as_mut()
                    .expect("an H.264 session has a decoder");
                match decoder.decode(frame.data()) {
                    Ok(Some(picture)) => {
                        playing.want_key = false;
                        self.refused = 0;
                        copy_i420(
                            &picture,
                            &mut self.buffer,
                            &mut self.width,
                            &mut self.height,
                        );
                        self.format = PixelFormat::I420;
                        Ok(true)
                    }
                    Ok(None) => Ok(false),
                    Err(e) => {
                        if self.refused == 0 {
                            log::warn!(
                                "source '{}': the decoder refused a frame ({e}); skipping to \
                                 the next key frame",
                                self.uri
                            );
                        }
                        self.refused += 1;
                        playing.want_key = true;
                        Ok(false)
                    }
                }
            }
        }
    }
}

/// A retina error as one line: its first (the rest is connection context, logged at debug),
/// with a hint where the camera refused the credentials.
fn failed(e: retina::Error) -> Lost {
    let text = e.to_string();
    log::debug!("rtsp: {}", crate::redact::redact(&text));
    let first = text.lines().next().unwrap_or_default().trim().to_string();
    Lost::Failed(if first.starts_with("401 ") {
        format!("{first} (is the URL's USER:PASSWORD@ right?)")
    } else {
        first
    })
}

/// Copies a decoded picture's planes into `buffer` as tight I420 rows.
fn copy_i420(
    picture: &impl YUVSource,
    buffer: &mut Vec<u8>,
    width: &mut usize,
    height: &mut usize,
) {
    let (w, h) = picture.dimensions();
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (sy, su, sv) = picture.strides();
    buffer.resize(w * h + 2 * cw * ch, 0);
    let (y, uv) = buffer.split_at_mut(w * h);
    let (u, v) = uv.split_at_mut(cw * ch);
    for (row, out) in y.chunks_exact_mut(w).enumerate() {
        out.copy_from_slice(&picture.y()[row * sy..row * sy + w]);
    }
    for (row, (ou, ov)) in u
        .chunks_exact_mut(cw)
        .zip(v.chunks_exact_mut(cw))
        .enumerate()
    {
        ou.copy_from_slice(&picture.u()[row * su..row * su + cw]);
        ov.copy_from_slice(&picture.v()[row * sv..row * sv + cw]);
    }
    (*width, *height) = (w, h);
}

impl FrameSource for RtspSource {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CameraError> {
        loop {
            if self.stop.stopped.load(Ordering::Acquire) {
                return Ok(None);
            }
            let step = match self.session {
                None => self.connect().map(|()| false),
                Some(_) => self.pull(),
            };
            match step {
                Ok(false) => continue,
                Ok(true) => {
                    if let Some(t) = self.outage_since.take() {
                        self.counters.outage_s += t.elapsed().as_secs_f64();
                    }
                    self.backoff.reset();
                    self.seq += 1;
                    return Ok(Some(Frame {
                        data: &self.buffer,
                        width: self.width,
                        height: self.height,
                        format: self.format,
                        seq: self.seq - 1,
                        captured: Instant::now(),
                    }));
                }
                Err(Lost::Stopped) => return Ok(None),
                Err(Lost::Unsupported(reason)) => {
                    self.close();
                    return Err(CameraError::BadData {
                        uri: self.uri.clone(),
                        reason,
                    });
                }
                Err(Lost::Failed(reason)) => {
                    if self.exit_on_error {
                        self.close();
                        return Err(self.capture_error(reason));
                    }
                    self.lose(&reason);
                }
            }
        }
    }

    fn interrupter(&self) -> Option<Interrupt> {
        let stop = self.stop.clone();
        Some(Box::new(move || {
            stop.stopped.store(true, Ordering::Release);
            stop.wake.notify_one();
        }))
    }

    fn counters(&self) -> SourceCounters {
        let mut c = self.counters;
        if let Some(t) = self.outage_since {
            c.outage_s += t.elapsed().as_secs_f64();
        }
        c
    }
}

impl Drop for RtspSource {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_without_a_host_are_bad_uris() {
        let e = RtspSource::open("rtsp:///x", "rtsp:///x", &SourceOptions::default())
            .err()
            .unwrap();
        assert!(e.is_bad_input(), "{e}");
        let e = RtspSource::open("rtsp://[", "rtsp://[", &SourceOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a URL"), "{e}");
    }

    #[test]
    fn a_closed_port_is_a_capture_error_with_exit_on_source_error() {
        // Port 9 (discard) on loopback: nothing listens there on a test machine.
        let options = SourceOptions {
            exit_on_error: true,
            ..SourceOptions::default()
        };
        let raw = "rtsp://u:secret@127.0.0.1:9/x";
        let shown = crate::redact::redact(raw);
        let e = RtspSource::open(&shown, raw, &options).err().unwrap();
        assert!(!e.is_bad_input(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("u:***@127.0.0.1:9") && !text.contains("secret"),
            "{text}"
        );
    }
}
