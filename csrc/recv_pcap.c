/* Reader that replays the UDP datagrams of a capture file (pcap or pcapng),
 * one SPEAD packet per datagram, optionally through a filter.
 *
 * The file is mapped, not read: a capture of many gigabytes costs address
 * space, not memory, and each payload goes from the page cache straight
 * into heap memory (the assembler's one copy). Like the buffer reader it
 * runs as a chain of tasks on the thread pool, a batch per task, so a full
 * ring pauses it and other work interleaves. The end of the file is the end
 * of the stream. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pcap.h"
#include "pcap_filter.h"
#include "recv_task.h"

/* Records passed over in one call of ``next`` before it returns (as a
 * skip), so that a long stretch of other traffic does not hold the stream
 * lock for the whole stretch. */
#define PCAP_SKIP_RUN 64
/* Truncated or unusable records logged one by one; the rest are only
 * counted (the summary at the end gives the total), so that a capture full
 * of them cannot crowd the end-of-file line out of the log queue. */
#define PCAP_LOG_EACH 8
/* The mapping is handled a window at a time, as the reader moves on: page
 * tables for the next PCAP_AHEAD bytes are filled in one call rather than a
 * fault at a time, and pages left PCAP_BEHIND bytes behind are unmapped
 * (the page cache keeps them), so the process's resident size stays small
 * however large the file. When the page cache holds the file in single
 * pages (as after writing it record by record), filling the tables ahead
 * takes about a quarter off the time to copy a capture out of it. */
#define PCAP_AHEAD ((size_t) 4 << 20)
#define PCAP_BEHIND ((size_t) 16 << 20)
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   /* Linux 5.14; older kernels refuse it, and faults do the work */
#endif

typedef struct {
    spead_reader base;
    uint8_t *map;
    size_t map_len;
    pcap_cursor cursor;
    pcap_filter *filter;
    char *name;                 /* the file, for messages */
    uint64_t fragments, truncated, unusable;
    size_t page;                /* the system's page size */
    size_t populated;           /* page tables are filled up to here */
    size_t dropped;             /* pages before this are unmapped */
    int populate;               /* the kernel takes MADV_POPULATE_READ */
} pcap_reader;

/* Move the window of the mapping to ``pos``, the start of the next record:
 * the previous packet (whose memory ``next`` had to keep valid until now)
 * has been copied into its heap. */
static void slide_window(pcap_reader *r, size_t pos)
{
    size_t page = r->page;
    if (pos > r->dropped + PCAP_BEHIND) {
        size_t upto = pos & ~(page - 1);
        madvise(r->map + r->dropped, upto - r->dropped, MADV_DONTNEED);
        r->dropped = upto;
    }
    if (r->populate && pos + PCAP_AHEAD / 2 > r->populated && r->populated < r->map_len) {
        size_t start = r->populated > pos ? r->populated : pos & ~(page - 1);
        size_t n = r->map_len - start < PCAP_AHEAD ? r->map_len - start : PCAP_AHEAD;
        if (madvise(r->map + start, n, MADV_POPULATE_READ) != 0 && errno == EINVAL)
            r->populate = 0;
        r->populated = start + n;
    }
}

static void summarise(pcap_reader *r)
{
    recv_stream *s = r->base.stream;
    if (r->fragments || r->truncated || r->unusable)
        recv_stream_log(s, SPEAD_LOG_INFO,
                        "%s: skipped %llu IP fragments, %llu truncated records and %llu "
                        "unusable records", r->name, (unsigned long long) r->fragments,
                        (unsigned long long) r->truncated, (unsigned long long) r->unusable);
}

static int pcap_next(spead_reader *base, spead_packet *pkt)
{
    pcap_reader *r = (pcap_reader *) base;
    recv_stream *s = base->stream;
    for (int passed = 0; passed < PCAP_SKIP_RUN; passed++) {
        pcap_record rec;
        if (r->cursor.pos < r->map_len)
            slide_window(r, r->cursor.pos);
        int st = pcap_cursor_next(&r->cursor, &rec);
        if (st == PCAP_NEXT_END) {
            summarise(r);
            return RECV_READ_END;
        }
        if (st == PCAP_NEXT_ERROR) {
            recv_stream_log(s, SPEAD_LOG_WARNING, "%s: reading stopped: %s", r->name,
                            r->cursor.error);
            summarise(r);
            return RECV_READ_END;
        }
        if (st == PCAP_NEXT_SKIP) {
            if (r->unusable++ < PCAP_LOG_EACH)
                recv_stream_log(s, SPEAD_LOG_INFO, "%s: %s", r->name, r->cursor.error);
            continue;
        }
        pcap_udp d;
        switch (pcap_parse_frame(rec.linktype, rec.data, rec.caplen, &d)) {
        case PCAP_FRAME_UDP:
            break;
        case PCAP_FRAME_FRAGMENT:
            r->fragments++;
            continue;
        case PCAP_FRAME_TRUNCATED:
            if (r->truncated++ < PCAP_LOG_EACH)
                recv_stream_log(s, SPEAD_LOG_INFO,
                                "%s: record at byte %zu skipped: %s (%zu bytes needed, "
                                "%zu there)", r->name, rec.offset, d.why, d.needed, d.captured);
            continue;
        default:
            continue;       /* not UDP over IP: not ours to report */
        }
        if (r->filter && !pcap_filter_match(r->filter, &d))
            continue;
        int ps = spead_decode_packet(d.payload, d.payload_len, pkt);
        if (ps != SPEAD_PACKET_OK) {
            recv_stream_count_locked(s, SPEAD_STAT_BAD_PACKETS);
            recv_stream_log(s, SPEAD_LOG_INFO, "%s: packet in record at byte %zu rejected: %s",
                            r->name, rec.offset, spead_packet_status_string(ps));
            return RECV_READ_SKIP;
        }
        return RECV_READ_PACKET;
    }
    return RECV_READ_SKIP;
}

static void pcap_destroy(spead_reader *base)
{
    pcap_reader *r = (pcap_reader *) base;
    pcap_cursor_destroy(&r->cursor);
    pcap_filter_free(r->filter);
    if (r->map)
        munmap(r->map, r->map_len);
    free(r->name);
    free(r);
}

static const spead_reader_ops pcap_ops = {
    .next = pcap_next,
    .start = task_reader_start,
    .resume = task_reader_start,
    .close = task_reader_close,
    .destroy = pcap_destroy,
    .lossy = 0,
};

/* Map the file read-only. Returns 0, or -1 with the reason in ``err``. */
static int map_file(pcap_reader *r, const char *path, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0)
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(EISDIR));
    else if (!S_ISREG(st.st_mode))
        snprintf(err, err_len, "cannot read %s: not a regular file", path);
    else if (st.st_size == 0)
        snprintf(err, err_len, "%s is empty, not a pcap or pcapng capture", path);
    else {
        void *map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            snprintf(err, err_len, "cannot map %s: %s", path, strerror(errno));
        } else {
            /* read once, front to back: ask for read-ahead */
            madvise(map, (size_t) st.st_size, MADV_SEQUENTIAL);
            r->populate = 1;
            r->page = (size_t) sysconf(_SC_PAGESIZE);
            r->map = map;
            r->map_len = (size_t) st.st_size;
            rc = 0;
        }
    }
    close(fd);
    return rc;
}

int recv_add_udp_pcap_file_reader(recv_stream *s, const char *path, const char *filter,
                                  char *err, size_t err_len)
{
    pcap_reader *r = calloc(1, sizeof(*r));
    if (!r || !(r->name = strdup(path))) {
        free(r);
        snprintf(err, err_len, "out of memory");
        return RECV_PCAP_BAD_FILE;
    }
    r->base.ops = &pcap_ops;
    int result = 0;
    if (map_file(r, path, err, err_len) != 0) {
        result = RECV_PCAP_BAD_FILE;
    } else if (pcap_cursor_init(&r->cursor, r->map, r->map_len) != 0) {
        snprintf(err, err_len, "%s: %s", path, r->cursor.error);
        result = RECV_PCAP_BAD_FILE;
    } else if (filter[0] != '\0' && !(r->filter = pcap_filter_compile(filter, err, err_len))) {
        result = RECV_PCAP_BAD_FILTER;
    }
    if (result != 0) {
        pcap_destroy(&r->base);
        return result;
    }
    if (recv_stream_add_reader(s, &r->base) != 0)
        return -ESHUTDOWN;
    return 0;
}
