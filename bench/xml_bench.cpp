// xml_bench: Starling's stream tokenizer against expat and pugixml on one XMPP c2s corpus.
//
// Every benchmark reads the same bytes (bench/gen_corpus.py, a complete <stream:stream>
// document), counts the depth-1 elements (stanzas) and looks at each one's name and to/from
// attributes, so no parser can skip the work the broker needs. Each reports bytes_per_second
// over the whole corpus and a `stanzas` counter; main() checks that all parsers agree on the
// stanza count before anything is timed.
//
//   BM_Starling        xmpp::xml::Tokenizer, 16 KiB chunks through prepare()/commit().
//   BM_Expat           XML_ParserCreateNS, start/end handlers only, 16 KiB chunks through
//                      XML_GetBuffer()/XML_ParseBuffer(), XML_ParserReset() between iterations.
//   BM_Pugixml         load_buffer_inplace(parse_default) of a fresh copy of the whole corpus.
//   BM_PugixmlMinimal  the same with parse_minimal (no unescaping, no EOL normalisation), the
//                      closest to what Starling does eagerly (it unescapes lazily).
//   BM_Memcpy          the corpus copy alone, the part of BM_Pugixml* that is not parsing.
//
// All three parsers pay one copy of the input: Starling and expat into their own buffers
// (as from a socket), pugixml into the buffer it parses in place.
//
// Corpus: --corpus=PATH, else $STARLING_XML_CORPUS, else the file the build generated.
#include <benchmark/benchmark.h>
#include <expat.h>

#include <pugixml.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xmpp/xml/tokenizer.hpp"

#ifndef STARLING_XML_CORPUS
#define STARLING_XML_CORPUS "xml_corpus.xml"
#endif

namespace {

constexpr std::size_t k_chunk = 16 * 1024;

std::string& corpus() {
    static std::string data;
    return data;
}

// What one pass over the corpus saw. `touched` sums the lengths of every stanza's name, to and
// from, so the compiler cannot drop the accesses.
struct Tally {
    std::uint64_t stanzas = 0;
    std::uint64_t touched = 0;
    bool stream_open = false;
    bool stream_close = false;
    bool ok = true;
};

// --- Starling ---------------------------------------------------------------------------------

Tally run_starling(xmpp::xml::Tokenizer& tok, std::string_view in) {
    using xmpp::xml::EventKind;
    Tally t;
    tok.reset();
    for (std::size_t off = 0; off < in.size() && t.ok;) {
        const std::size_t n = std::min(k_chunk, in.size() - off);
        auto space = tok.prepare(n);
        std::memcpy(space.data(), in.data() + off, n);
        tok.commit(n);
        off += n;
        for (;;) {
            const auto ev = tok.next();
            const EventKind kind = ev.kind();
            if (kind == EventKind::need_more) break;
            if (kind == EventKind::stanza) {
                const auto& el = ev.element();
                ++t.stanzas;
                t.touched += el.qualified_name().size() + el.to().raw().size() +
                             el.from().raw().size();
            } else if (kind == EventKind::stream_open) {
                t.stream_open = true;
            } else if (kind == EventKind::stream_close) {
                t.stream_close = true;
                break;
            } else {
                std::fprintf(stderr, "starling: error '%s' at byte %llu\n", ev.error().detail,
                             static_cast<unsigned long long>(ev.error().offset));
                t.ok = false;
                break;
            }
        }
    }
    t.ok = t.ok && t.stream_open && t.stream_close;
    return t;
}

// --- expat ------------------------------------------------------------------------------------

struct ExpatState {
    std::uint32_t depth = 0;
    Tally tally;
};

// With namespace processing, names arrive as "uri\x01local"; attributes as name/value pairs.
void XMLCALL expat_start(void* user, const XML_Char* name, const XML_Char** attrs) {
    auto* s = static_cast<ExpatState*>(user);
    if (s->depth == 1) {
        ++s->tally.stanzas;
        std::size_t touched = std::strlen(name);
        for (const XML_Char** a = attrs; *a; a += 2) {
            if (std::strcmp(a[0], "to") == 0 || std::strcmp(a[0], "from") == 0) {
                touched += std::strlen(a[1]);
            }
        }
        s->tally.touched += touched;
    } else if (s->depth == 0) {
        s->tally.stream_open = true;
    }
    ++s->depth;
}

void XMLCALL expat_end(void* user, const XML_Char*) {
    auto* s = static_cast<ExpatState*>(user);
    if (--s->depth == 0) s->tally.stream_close = true;
}

class Expat {
public:
    Expat() : _parser(XML_ParserCreateNS(nullptr, '\x01')) {}
    ~Expat() { XML_ParserFree(_parser); }
    Expat(const Expat&) = delete;
    Expat& operator=(const Expat&) = delete;

    Tally run(std::string_view in) {
        XML_ParserReset(_parser, nullptr);
        // A fixed salt skips the getrandom() call expat makes per document; nothing else
        // changes for a benchmark.
        XML_SetHashSalt(_parser, 0x5eed);
        ExpatState st;
        XML_SetUserData(_parser, &st);
        XML_SetElementHandler(_parser, expat_start, expat_end);
        for (std::size_t off = 0; off < in.size();) {
            const std::size_t n = std::min(k_chunk, in.size() - off);
            void* buf = XML_GetBuffer(_parser, static_cast<int>(n));
            if (!buf) {
                st.tally.ok = false;
                break;
            }
            std::memcpy(buf, in.data() + off, n);
            off += n;
            if (XML_ParseBuffer(_parser, static_cast<int>(n), off == in.size()) !=
                XML_STATUS_OK) {
                std::fprintf(stderr, "expat: %s at line %lu\n",
                             XML_ErrorString(XML_GetErrorCode(_parser)),
                             static_cast<unsigned long>(XML_GetCurrentLineNumber(_parser)));
                st.tally.ok = false;
                break;
            }
        }
        st.tally.ok = st.tally.ok && st.tally.stream_open && st.tally.stream_close;
        return st.tally;
    }

private:
    XML_Parser _parser;
};

// --- pugixml ----------------------------------------------------------------------------------

Tally run_pugixml(pugi::xml_document& doc, std::vector<char>& buf, std::string_view in,
                  unsigned flags) {
    Tally t;
    std::memcpy(buf.data(), in.data(), in.size());
    const auto res = doc.load_buffer_inplace(buf.data(), in.size(), flags, pugi::encoding_utf8);
    if (!res) {
        std::fprintf(stderr, "pugixml: %s at byte %td\n", res.description(), res.offset);
        t.ok = false;
        return t;
    }
    const pugi::xml_node root = doc.document_element();
    t.stream_open = t.stream_close = !root.empty();
    for (pugi::xml_node n = root.first_child(); n; n = n.next_sibling()) {
        if (n.type() != pugi::node_element) continue;
        ++t.stanzas;
        t.touched += std::strlen(n.name()) + std::strlen(n.attribute("to").value()) +
                     std::strlen(n.attribute("from").value());
    }
    return t;
}

// --- benchmarks -------------------------------------------------------------------------------

void finish(benchmark::State& state, const Tally& t) {
    if (!t.ok) state.SkipWithError("parse failed");
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(corpus().size()));
    state.counters["stanzas"] = static_cast<double>(t.stanzas);
}

void BM_Starling(benchmark::State& state) {
    xmpp::xml::Tokenizer tok;
    Tally t;
    for (auto _ : state) {
        t = run_starling(tok, corpus());
        benchmark::DoNotOptimize(t);
    }
    finish(state, t);
}

void BM_Expat(benchmark::State& state) {
    Expat parser;
    Tally t;
    for (auto _ : state) {
        t = parser.run(corpus());
        benchmark::DoNotOptimize(t);
    }
    finish(state, t);
}

void pugixml_bench(benchmark::State& state, unsigned flags) {
    pugi::xml_document doc;
    std::vector<char> buf(corpus().size());
    Tally t;
    for (auto _ : state) {
        t = run_pugixml(doc, buf, corpus(), flags);
        benchmark::DoNotOptimize(t);
    }
    finish(state, t);
}

void BM_Pugixml(benchmark::State& state) { pugixml_bench(state, pugi::parse_default); }
void BM_PugixmlMinimal(benchmark::State& state) { pugixml_bench(state, pugi::parse_minimal); }

void BM_Memcpy(benchmark::State& state) {
    std::vector<char> buf(corpus().size());
    for (auto _ : state) {
        std::memcpy(buf.data(), corpus().data(), corpus().size());
        benchmark::DoNotOptimize(buf.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                            static_cast<std::int64_t>(corpus().size()));
}

BENCHMARK(BM_Starling)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Expat)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Pugixml)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PugixmlMinimal)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond);

// Runs every parser once and checks they agree before anything is timed.
bool check_corpus() {
    const std::string_view in = corpus();
    xmpp::xml::Tokenizer tok;
    Expat expat;
    pugi::xml_document doc;
    std::vector<char> buf(in.size());
    const Tally s = run_starling(tok, in);
    const Tally e = expat.run(in);
    const Tally p = run_pugixml(doc, buf, in, pugi::parse_default);
    const Tally pm = run_pugixml(doc, buf, in, pugi::parse_minimal);
    std::fprintf(stderr,
                 "corpus: %zu bytes; stanzas: starling %llu, expat %llu, pugixml %llu/%llu\n",
                 in.size(), static_cast<unsigned long long>(s.stanzas),
                 static_cast<unsigned long long>(e.stanzas),
                 static_cast<unsigned long long>(p.stanzas),
                 static_cast<unsigned long long>(pm.stanzas));
    const bool ok = s.ok && e.ok && p.ok && pm.ok && s.stanzas > 0 && s.stanzas == e.stanzas &&
                    s.stanzas == p.stanzas && s.stanzas == pm.stanzas;
    // to/from values: Starling keeps them escaped, expat and pugixml(default) unescape, so only
    // the two that agree on escaping can be compared byte for byte.
    if (ok && s.touched != pm.touched) {
        std::fprintf(stderr, "name/to/from bytes differ: starling %llu, pugixml minimal %llu\n",
                     static_cast<unsigned long long>(s.touched),
                     static_cast<unsigned long long>(pm.touched));
        return false;
    }
    if (!ok) std::fprintf(stderr, "xml_bench: the parsers disagree on the corpus\n");
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    std::string path = STARLING_XML_CORPUS;
    if (const char* env = std::getenv("STARLING_XML_CORPUS")) path = env;
    // Takes --corpus=PATH out of argv before Google Benchmark sees it.
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg.substr(0, 9) == "--corpus=") {
            path = std::string(arg.substr(9));
        } else {
            argv[out++] = argv[i];
        }
    }
    argc = out;

    std::ifstream f(path, std::ios::binary);
    if (!f) {
        std::fprintf(stderr, "xml_bench: cannot read corpus %s (--corpus=PATH)\n", path.c_str());
        return 1;
    }
    corpus().assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    if (!check_corpus()) return 1;

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("corpus", path);
    benchmark::AddCustomContext("corpus_bytes", std::to_string(corpus().size()));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
