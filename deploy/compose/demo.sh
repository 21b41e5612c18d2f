#!/bin/sh
# The compose stack's demo app: each cycle writes a plain line, a JSON line, a warning on
# stderr and a multi-line Java stack trace, so Kibana has a bit of everything to search.
# DEMO_CYCLES=0 runs forever; DEMO_INTERVAL_S is the pause between cycles.
cycles="${DEMO_CYCLES:-0}"
interval="${DEMO_INTERVAL_S:-5}"
i=0
while [ "$cycles" -eq 0 ] || [ "$i" -lt "$cycles" ]; do
    i=$((i + 1))
    echo "GET /orders/$i 200 12ms user=demo cycle=$i"
    echo "{\"level\":\"info\",\"msg\":\"order placed\",\"order_id\":$i,\"amount_eur\":$((i * 7 % 100)).50,\"cycle\":$i}"
    echo "WARN cache miss ratio high cycle=$i" >&2
    cat >&2 <<TRACE
Exception in thread "worker-$i" java.lang.IllegalStateException: order $i is already paid
	at com.example.shop.Orders.pay(Orders.java:42)
	at com.example.shop.Checkout.run(Checkout.java:17)
	at java.base/java.lang.Thread.run(Thread.java:1583)
TRACE
    if [ "$interval" != 0 ]; then sleep "$interval"; fi
done
