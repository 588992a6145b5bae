-- wrk runs for a duration; this script makes it run for a number of requests.
--
--   wrk -t1 -c1 -d600s --timeout 60s --latency -s bench/wrk_requests.lua URL \
--       -- 1000 1 /tmp/some-new-file
--
-- The arguments after `--` are the number of responses to wait for in all,
-- the number of threads (wrk's -t, which a script cannot read), and a file
-- that must not exist yet (the threads' finish line). Each thread takes an
-- equal share, so the first must be a multiple of the second. A thread
-- counts the responses it reads and stops its event loop when it has its
-- share, so wrk's summary and latency percentiles cover that many requests,
-- provided the -d duration is long enough (if it is not, the count printed
-- below falls short and bench/http.sh says so).
--
-- wrk's main thread sleeps for the whole -d duration whatever its threads
-- do, and only SIGINT cuts that sleep short (it then prints the summary as
-- usual). So each thread, once it has its share, appends a line to the
-- finish-line file, and the one that completes it sends SIGINT to wrk:
-- os.execute runs `sh -c`, whose parent ($PPID) is wrk. The run's duration,
-- and so wrk's Requests/sec, then ends within a few milliseconds of the
-- last response instead of at -d.
--
-- With one connection per thread the count is exact. With several, a
-- thread's event loop stops only after the batch of events it is handling,
-- so a few responses that arrived together with the last one are counted
-- too (the count can exceed the share by up to connections - 1 per thread);
-- requests still in flight then are abandoned unanswered and not counted.
--
-- At the end it prints one line for bench/http.sh to check:
--   wrk_requests: wanted 1000 counted 1000 status_200 1000 other 0 first_other -
-- "other" counts any status but 200 (a redirect to /login is not a page);
-- first_other is the first such status seen, or "-".

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    local total, n = tonumber(args[1]), tonumber(args[2])
    finish_line = args[3]
    if total == nil or n == nil or total < 1 or n < 1 or total % n ~= 0
        or finish_line == nil or not finish_line:match("^[%w%.%-_/+]+$") then
        error("wrk_requests.lua: give the requests in all, the threads and a new file's path "
            .. "after --, e.g. -- 1000 1 /tmp/finish (the path in letters, digits and ._-/+)")
    end
    share = total / n
    nthreads = n
    finished = false
    wanted = total
    counted = 0
    ok = 0
    other = 0
    first_other = "-"
end

function response(status, headers, body)
    counted = counted + 1
    if status == 200 then
        ok = ok + 1
    else
        other = other + 1
        if first_other == "-" then first_other = tostring(status) end
    end
    if counted >= share and not finished then
        finished = true
        wrk.thread:stop()
        -- system() ignores SIGINT in wrk until the shell it runs exits, so
        -- the signal is sent from a background loop, again every 5 ms until
        -- wrk is gone (a thread may be inside system() at the first try).
        os.execute(string.format(
            "echo done >>'%s'; if [ \"$(wc -l <'%s')\" -ge %d ]; then "
            .. "(while kill -INT $PPID 2>/dev/null; do sleep 0.005; done) >/dev/null 2>&1 & fi",
            finish_line, finish_line, nthreads))
    end
end

function done(summary, latency, requests)
    local wanted_all, counted_all, ok_all, other_all, first = 0, 0, 0, 0, "-"
    for _, t in ipairs(threads) do
        wanted_all = t:get("wanted")
        counted_all = counted_all + t:get("counted")
        ok_all = ok_all + t:get("ok")
        other_all = other_all + t:get("other")
        if first == "-" then first = t:get("first_other") end
    end
    io.write(string.format("wrk_requests: wanted %d counted %d status_200 %d other %d first_other %s\n",
        wanted_all, counted_all, ok_all, other_all, first))
end
