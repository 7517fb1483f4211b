/* Unit tests of the bounded submission ring: order, capacity, blocking,
 * closing, and many producers against many consumers. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "ring.h"

#define PRODUCERS 4
#define PER_PRODUCER 20000

static struct ring shared_ring;
static _Atomic long consumed_sum;
static _Atomic long consumed_count;

static void *producer(void *arg)
{
    long base = (long)(intptr_t)arg * PER_PRODUCER;
    for (long i = 1; i <= PER_PRODUCER; i++)
        ring_push(&shared_ring, (void *)(intptr_t)(base + i), 1);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    void *batch[16];
    while (consumed_count < PRODUCERS * PER_PRODUCER) {
        size_t n = ring_pop_many(&shared_ring, batch, 16);
        for (size_t i = 0; i < n; i++) {
            consumed_sum += (long)(intptr_t)batch[i];
            consumed_count++;
        }
    }
    return NULL;
}

static void test_order_and_capacity(void)
{
    struct ring r;
    CHECK_EQ_INT(ring_init(&r, 0), EINVAL);
    CHECK_EQ_INT(ring_init(&r, 3), 0);
    for (intptr_t i = 1; i <= 3; i++)
        CHECK_EQ_INT(ring_push(&r, (void *)i, 0), 0);
    CHECK_EQ_INT(ring_push(&r, (void *)4, 0), EAGAIN);
    CHECK_EQ_INT(ring_count(&r), 3);
    void *out = NULL;
    CHECK_EQ_INT(ring_try_pop(&r, &out), 0);
    CHECK_EQ_INT((intptr_t)out, 1);
    CHECK_EQ_INT(ring_push(&r, (void *)4, 0), 0); /* wraps around */
    void *many[8];
    size_t n = ring_pop_many(&r, many, 8);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT((intptr_t)many[0], 2);
    CHECK_EQ_INT((intptr_t)many[2], 4);
    CHECK_EQ_INT(ring_try_pop(&r, &out), EAGAIN);
    ring_close(&r);
    CHECK_EQ_INT(ring_push(&r, (void *)5, 1), EPIPE);
    ring_destroy(&r);
}

static void test_concurrent(void)
{
    CHECK_EQ_INT(ring_init(&shared_ring, 8), 0); /* small: producers block often */
    pthread_t prod[PRODUCERS], cons[2];
    for (intptr_t i = 0; i < 2; i++)
        pthread_create(&cons[i], NULL, consumer, NULL);
    for (intptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&prod[i], NULL, producer, (void *)i);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(cons[i], NULL);
    long total = (long)PRODUCERS * PER_PRODUCER;
    CHECK_EQ_INT(consumed_count, total);
    CHECK_EQ_INT(consumed_sum, total * (total + 1) / 2);
    ring_destroy(&shared_ring);
}

int main(void)
{
    test_order_and_capacity();
    test_concurrent();
    return check_report("test_ring");
}
