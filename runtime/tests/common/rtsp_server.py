#!/usr/bin/env python3
"""A test RTSP server: rtsp://127.0.0.1:PORT/test streams a live MJPEG test pattern, 320x240
at 15 fps in 4:2:0 (what RTP JPEG carries), through GStreamer's rtsp-server and PyGObject
(Debian's python3-gi and gir1.2-gst-rtsp-server-1.0). Prints "ready" once it listens; runs
until killed.

Usage: rtsp_server.py PORT
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=15/1 "
                   "! jpegenc ! rtpjpegpay name=pay0 pt=96 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on port {sys.argv[1]}")
print("ready", flush=True)
GLib.MainLoop().run()
