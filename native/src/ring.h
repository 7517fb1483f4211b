/* Private: a bounded multi-producer/multi-consumer ring of pointers.
 * Used for the engine's submission ring.  A mutex and two condition
 * variables keep it simple and correct; the items are whole batches, so the
 * lock is taken once per batch, not once per request. */
#ifndef S3DL_RING_H
#define S3DL_RING_H

#include <pthread.h>
#include <stddef.h>

struct ring {
    void **slots;
    size_t capacity;
    size_t head;  /* index of the oldest element */
    size_t count;
    int closed;   /* no more pushes; pops drain what is left */
    pthread_mutex_t mutex;
    pthread_cond_t not_full;
    pthread_cond_t not_empty;
};

/* Initialises an empty ring of `capacity` (>= 1) slots.  Returns 0 or ENOMEM/EINVAL. */
int ring_init(struct ring *r, size_t capacity);

/* Frees the slots (not the elements).  The ring must not be in use. */
void ring_destroy(struct ring *r);

/* Appends `item`.  With `block` set, waits while full; else returns EAGAIN.
 * Returns EPIPE once the ring is closed. */
int ring_push(struct ring *r, void *item, int block);

/* Removes the oldest element into *out.  Returns 0, or EAGAIN when empty. */
int ring_try_pop(struct ring *r, void **out);

/* Removes up to `max` elements into `out`; returns how many. */
size_t ring_pop_many(struct ring *r, void **out, size_t max);

/* Refuses further pushes and wakes blocked producers (they get EPIPE). */
void ring_close(struct ring *r);

/* Current element count (a snapshot). */
size_t ring_count(struct ring *r);

/* Re-creates the locks in a forked child and empties the ring: elements
 * belonged to the parent's threads. */
void ring_reset_after_fork(struct ring *r);

#endif
