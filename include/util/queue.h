/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Intrusive doubly-linked lists (the BSD "LIST" and "TAILQ" shapes): an
 * element embeds a QLIST_ENTRY or QTAILQ_ENTRY and can unlink itself in
 * O(1) without knowing its list.  A QTAILQ also appends in O(1), for lists
 * kept in creation order.  No locking: every list's owner says which lock
 * or thread protects it.
 */
#ifndef UTIL_QUEUE_H
#define UTIL_QUEUE_H

#define QLIST_HEAD(name, type)                                          \
    struct name {                                                       \
        struct type *lh_first;                                          \
    }

#define QLIST_HEAD_INITIALIZER { NULL }

#define QLIST_ENTRY(type)                                               \
    struct {                                                            \
        struct type *le_next;                                           \
        struct type **le_prev;  /* address of the previous le_next */   \
    }

#define QLIST_INIT(head)        ((head)->lh_first = NULL)
#define QLIST_EMPTY(head)       ((head)->lh_first == NULL)
#define QLIST_FIRST(head)       ((head)->lh_first)
#define QLIST_NEXT(elm, field)  ((elm)->field.le_next)
/* True if @elm is on a list (it was inserted and not removed since). */
#define QLIST_IS_INSERTED(elm, field) ((elm)->field.le_prev != NULL)

#define QLIST_INSERT_HEAD(head, elm, field) do {                        \
    if (((elm)->field.le_next = (head)->lh_first) != NULL) {            \
        (head)->lh_first->field.le_prev = &(elm)->field.le_next;        \
    }                                                                   \
    (head)->lh_first = (elm);                                           \
    (elm)->field.le_prev = &(head)->lh_first;                           \
} while (0)

#define QLIST_REMOVE(elm, field) do {                                   \
    if ((elm)->field.le_next != NULL) {                                 \
        (elm)->field.le_next->field.le_prev = (elm)->field.le_prev;     \
    }                                                                   \
    *(elm)->field.le_prev = (elm)->field.le_next;                       \
    (elm)->field.le_next = NULL;                                        \
    (elm)->field.le_prev = NULL;                                        \
} while (0)

#define QLIST_FOREACH(var, head, field)                                 \
    for ((var) = (head)->lh_first; (var); (var) = (var)->field.le_next)

/* Safe against removal of @var inside the loop body. */
#define QLIST_FOREACH_SAFE(var, head, field, next_var)                  \
    for ((var) = (head)->lh_first;                                      \
         (var) && ((next_var) = (var)->field.le_next, 1);               \
         (var) = (next_var))

/* --- Tail queues ---------------------------------------------------------- */

#define QTAILQ_HEAD(name, type)                                         \
    struct name {                                                       \
        struct type *tqh_first;                                         \
        struct type **tqh_last; /* address of the last tqe_next */      \
    }

#define QTAILQ_HEAD_INITIALIZER(head) { NULL, &(head).tqh_first }

#define QTAILQ_ENTRY(type)                                              \
    struct {                                                            \
        struct type *tqe_next;                                          \
        struct type **tqe_prev; /* address of the previous tqe_next */  \
    }

#define QTAILQ_INIT(head) do {                                          \
    (head)->tqh_first = NULL;                                           \
    (head)->tqh_last = &(head)->tqh_first;                              \
} while (0)
#define QTAILQ_EMPTY(head)      ((head)->tqh_first == NULL)
#define QTAILQ_FIRST(head)      ((head)->tqh_first)
#define QTAILQ_NEXT(elm, field) ((elm)->field.tqe_next)
/* True if @elm is on a queue (it was inserted and not removed since). */
#define QTAILQ_IS_INSERTED(elm, field) ((elm)->field.tqe_prev != NULL)

#define QTAILQ_INSERT_TAIL(head, elm, field) do {                       \
    (elm)->field.tqe_next = NULL;                                       \
    (elm)->field.tqe_prev = (head)->tqh_last;                           \
    *(head)->tqh_last = (elm);                                          \
    (head)->tqh_last = &(elm)->field.tqe_next;                          \
} while (0)

#define QTAILQ_REMOVE(head, elm, field) do {                            \
    if ((elm)->field.tqe_next != NULL) {                                \
        (elm)->field.tqe_next->field.tqe_prev = (elm)->field.tqe_prev;  \
    } else {                                                            \
        (head)->tqh_last = (elm)->field.tqe_prev;                       \
    }                                                                   \
    *(elm)->field.tqe_prev = (elm)->field.tqe_next;                     \
    (elm)->field.tqe_next = NULL;                                       \
    (elm)->field.tqe_prev = NULL;                                       \
} while (0)

#define QTAILQ_FOREACH(var, head, field)                                \
    for ((var) = (head)->tqh_first; (var); (var) = (var)->field.tqe_next)

/* Safe against removal of @var inside the loop body. */
#define QTAILQ_FOREACH_SAFE(var, head, field, next_var)                 \
    for ((var) = (head)->tqh_first;                                     \
         (var) && ((next_var) = (var)->field.tqe_next, 1);              \
         (var) = (next_var))

#endif /* UTIL_QUEUE_H */
