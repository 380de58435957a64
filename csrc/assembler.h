/* Heap assembly, sans-IO: decoded packets in, finished heaps out.
 *
 * The assembler keeps up to max_heaps heaps under assembly per substream
 * (the substream of a heap is cnt % substreams). A packet of a heap it does
 * not know starts one in the substream's next slot, evicting whatever heap
 * was there: the oldest started in that substream. A heap leaves when it is
 * complete, when it is evicted, or when the assembler is flushed; each
 * leaving heap goes to the sink. There are no locks, threads or clocks here:
 * the owner serialises calls and supplies the allocator and copy function.
 */
#ifndef SPEAD2_ASSEMBLER_H
#define SPEAD2_ASSEMBLER_H

#include <stddef.h>
#include <stdint.h>

#include "heap.h"
#include "live_heap.h"
#include "stats.h"

typedef struct {
    size_t max_heaps;            /* heaps under assembly per substream, >= 1 */
    size_t substreams;           /* >= 1 */
    uint64_t max_heap_size;      /* bytes of payload (and of item pointers) per heap */
    int bug_compat;
    int allow_out_of_order;      /* else a heap's packets must arrive in payload order */
    int allow_unsized_heaps;     /* else packets without HEAP_LENGTH are refused */
    int stop_on_stop_item;       /* a packet with a stop item ends the stream (its heap is
                                  * not handed on); else it is assembled like any other */
    int keep_payload_ranges;     /* finished heaps record which payload arrived */
    /* When set, heaps' payloads go where it says and finished heaps are
     * reported to it instead of the sink (a chunk stream). */
    const spead_heap_placement *placement;
} spead_assembler_config;

/* Why a heap left the assembler. */
enum spead_heap_exit {
    SPEAD_HEAP_COMPLETED = 0,
    SPEAD_HEAP_EVICTED,          /* pushed out by a newer heap in its substream */
    SPEAD_HEAP_FLUSHED           /* still under assembly when the assembler was flushed */
};

/* Receives each finished heap, and owns it from then on. ``heap`` is NULL
 * when memory for it ran out (the heap is lost). */
typedef void (*spead_heap_sink)(void *ctx, spead_heap *heap, int exit);

typedef struct spead_assembler spead_assembler;

spead_assembler *spead_assembler_new(const spead_assembler_config *config,
                                     spead_allocator *alloc, spead_heap_sink sink, void *ctx);
/* Discards the heaps under assembly without handing them on. */
void spead_assembler_free(spead_assembler *a);
const spead_assembler_config *spead_assembler_get_config(const spead_assembler *a);
void spead_assembler_set_allocator(spead_assembler *a, spead_allocator *alloc);
void spead_assembler_set_memcpy(spead_assembler *a, int nontemporal);

/* Offer one decoded packet. Heaps it completes or evicts go to the sink
 * before this returns. Counts into ``stats`` (SPEAD_STAT_* indices). Returns
 * SPEAD_FEED_ACCEPTED, SPEAD_FEED_STOP, or why the packet was dropped. */
int spead_assembler_feed(spead_assembler *a, const spead_packet *pkt, uint64_t *stats);
/* Hand every heap under assembly to the sink, substream by substream,
 * oldest first. */
void spead_assembler_flush(spead_assembler *a, uint64_t *stats);
/* Number of heaps under assembly. */
size_t spead_assembler_live(const spead_assembler *a);

/* Where the payload of heap ``cnt`` goes next, for a reader that receives
 * straight into heap memory: the heap's own memory (``base``), the end of
 * the furthest payload that has arrived (everything from there on is still
 * missing) and the heap's length. Returns 0 unless heap ``cnt`` is under
 * assembly with a known length and memory of its own (not a placement's).
 * The answer holds only while the caller keeps the assembler to itself. */
int spead_assembler_payload_window(const spead_assembler *a, int64_t cnt, uint8_t **base,
                                   uint64_t *data_end, uint64_t *length);

#endif
