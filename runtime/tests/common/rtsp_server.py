#!/usr/bin/env python3
"""A test RTSP server, through GStreamer's rtsp-server and PyGObject (Debian's python3-gi and
gir1.2-gst-rtsp-server-1.0). Two live test patterns (SMPTE bars), 320x240 at 15 fps in 4:2:0:

- rtsp://127.0.0.1:PORT/test: Motion-JPEG (RTP/JPEG, what jpegenc and rtpjpegpay send);
- rtsp://127.0.0.1:PORT/h264: H.264 from openh264enc (gstreamer1.0-plugins-bad), a key frame
  every 15 frames, parameter sets in the SDP and before each key frame.

With USER:PASSWORD, every mount asks for that user (RTSP basic authentication); without it,
anyone may play. Prints "ready" once it listens; runs until killed.

Usage: rtsp_server.py PORT [USER:PASSWORD]
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_service(sys.argv[1])
SOURCE = "videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=15/1"
MOUNTS = {
    "/test": f"( {SOURCE} ! jpegenc ! rtpjpegpay name=pay0 pt=96 )",
    "/h264": f"( {SOURCE} ! openh264enc gop-size=15 bitrate=1000000 ! h264parse "
             "! rtph264pay name=pay0 pt=96 config-interval=-1 )",
}
user = sys.argv[2].split(":", 1) if len(sys.argv) > 2 else None
if user:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user[0], user[1]), token)
    server.set_auth(auth)
for path, launch in MOUNTS.items():
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    if user:
        role = Gst.Structure.from_string(
            "camera-user, media.factory.access=(boolean)true, "
            "media.factory.construct=(boolean)true")[0]
        factory.add_role_from_structure(role)
    server.get_mount_points().add_factory(path, factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on port {sys.argv[1]}")
print("ready", flush=True)
GLib.MainLoop().run()
