/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Intrusive doubly-linked lists (the BSD "LIST" shape): an element embeds
 * a QLIST_ENTRY and can unlink itself in O(1) without knowing its list.
 * No locking: every list's owner says which lock or thread protects it.
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

#endif /* UTIL_QUEUE_H */
