// Internal to c2s/session*.cpp: the XEP-0138 state of a session once compression is negotiated.
#pragma once

#include "broker/src/c2s/session.hpp"
#include "xmpp/zlib/zlib_stream.hpp"

namespace starling::c2s {

struct C2sSession::Compression {
    xmpp::zlib::Deflater out;  // our direction: one flush per output batch
    xmpp::zlib::Inflater in;   // the client's: bounded per read
};

}  // namespace starling::c2s
