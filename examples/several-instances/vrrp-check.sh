#!/bin/sh
# keepalived's check (keepalived.conf): 0 while roundguardd answers on its
# control socket and has at least one backend up. roundguardctl exits
# non-zero when no daemon answers (3), access is denied (4) or the answer is
# bad (5); grep fails when no backend is "up".
roundguardctl --json -t 2 status | grep -q '"state":"up"'
