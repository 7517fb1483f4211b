/* Bounded pointer ring; see ring.h. */
#include "ring.h"

#include <errno.h>
#include <stdlib.h>

int ring_init(struct ring *r, size_t capacity)
{
    if (!r || capacity == 0)
        return EINVAL;
    r->slots = calloc(capacity, sizeof(void *));
    if (!r->slots)
        return ENOMEM;
    r->capacity = capacity;
    r->head = 0;
    r->count = 0;
    r->closed = 0;
    pthread_mutex_init(&r->mutex, NULL);
    pthread_cond_init(&r->not_full, NULL);
    pthread_cond_init(&r->not_empty, NULL);
    return 0;
}

void ring_destroy(struct ring *r)
{
    if (!r || !r->slots)
        return;
    free(r->slots);
    r->slots = NULL;
    pthread_mutex_destroy(&r->mutex);
    pthread_cond_destroy(&r->not_full);
    pthread_cond_destroy(&r->not_empty);
}

int ring_push(struct ring *r, void *item, int block)
{
    pthread_mutex_lock(&r->mutex);
    while (!r->closed && r->count == r->capacity) {
        if (!block) {
            pthread_mutex_unlock(&r->mutex);
            return EAGAIN;
        }
        pthread_cond_wait(&r->not_full, &r->mutex);
    }
    if (r->closed) {
        pthread_mutex_unlock(&r->mutex);
        return EPIPE;
    }
    r->slots[(r->head + r->count) % r->capacity] = item;
    r->count++;
    pthread_cond_signal(&r->not_empty);
    pthread_mutex_unlock(&r->mutex);
    return 0;
}

static void *pop_locked(struct ring *r)
{
    void *item = r->slots[r->head];
    r->slots[r->head] = NULL;
    r->head = (r->head + 1) % r->capacity;
    r->count--;
    return item;
}

int ring_try_pop(struct ring *r, void **out)
{
    pthread_mutex_lock(&r->mutex);
    if (r->count == 0) {
        pthread_mutex_unlock(&r->mutex);
        return EAGAIN;
    }
    *out = pop_locked(r);
    pthread_cond_signal(&r->not_full);
    pthread_mutex_unlock(&r->mutex);
    return 0;
}

size_t ring_pop_many(struct ring *r, void **out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&r->mutex);
    while (n < max && r->count > 0)
        out[n++] = pop_locked(r);
    if (n > 0)
        pthread_cond_broadcast(&r->not_full);
    pthread_mutex_unlock(&r->mutex);
    return n;
}

void ring_close(struct ring *r)
{
    pthread_mutex_lock(&r->mutex);
    r->closed = 1;
    pthread_cond_broadcast(&r->not_full);
    pthread_cond_broadcast(&r->not_empty);
    pthread_mutex_unlock(&r->mutex);
}

size_t ring_count(struct ring *r)
{
    pthread_mutex_lock(&r->mutex);
    size_t n = r->count;
    pthread_mutex_unlock(&r->mutex);
    return n;
}

void ring_reset_after_fork(struct ring *r)
{
    pthread_mutex_init(&r->mutex, NULL);
    pthread_cond_init(&r->not_full, NULL);
    pthread_cond_init(&r->not_empty, NULL);
    r->head = 0;
    r->count = 0;
    r->closed = 0;
}
