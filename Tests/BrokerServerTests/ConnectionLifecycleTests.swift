import Testing

@testable import BrokerServer

/// The handlers' connection state machine, without sockets: every transition and the
/// action it asks for.
@Suite("Connection lifecycle")
struct ConnectionLifecycleTests {
    @Test("serving: answers are flushed once per read batch, and only when something was written")
    func servingFlushesOncePerBatch() {
        var life = ConnectionLifecycle()
        #expect(life.servesRequests && life.reads && life.keepsOpen)
        life.readBatchBegan()
        life.wrote()
        let step1 = life.answered(pending: 1, open: true)
        #expect(step1 == .none, "inside a batch the flush waits")
        life.wrote()
        let step2 = life.answered(pending: 0, open: true)
        #expect(step2 == .none)
        let step3 = life.readBatchEnded(pending: 0, open: true)
        #expect(step3 == .flush)
        let step4 = life.readBatchEnded(pending: 0, open: true)
        #expect(step4 == .none, "nothing written since")
        // An exchange's answer outside a batch goes out at once.
        life.wrote()
        let step5 = life.answered(pending: 0, open: true)
        #expect(step5 == .flush)
        #expect(life.state == .serving)
    }

    @Test("finishing: no new requests, the pending answers go out, then one close")
    func finishingClosesWhenNothingIsOwed() {
        var life = ConnectionLifecycle()
        life.finish()
        #expect(life.state == .finishing && !life.servesRequests && life.reads && !life.keepsOpen)
        let step6 = life.settle(pending: 2, open: true)
        #expect(step6 == .none)
        life.wrote()
        let step7 = life.settle(pending: 1, open: true)
        #expect(step7 == .flush)
        life.wrote()
        let step8 = life.settle(pending: 0, open: true)
        #expect(step8 == .close(flushFirst: true))
        #expect(life.state == .closed && !life.reads)
        let step9 = life.settle(pending: 0, open: true)
        #expect(step9 == .none, "closed once")
    }

    @Test("a connection already closed by its peer is not closed again, and still closes once it is owed nothing")
    func closedByThePeer() {
        var life = ConnectionLifecycle()
        life.finish()
        let step10 = life.settle(pending: 0, open: false)
        #expect(step10 == .none)
        #expect(life.state == .finishing)
        let step11 = life.settle(pending: 0, open: true)
        #expect(step11 == .close(flushFirst: false))
    }

    @Test("inside a read batch, a connection owed nothing more closes at once (flushing first)")
    func closesInsideABatch() {
        var life = ConnectionLifecycle()
        life.readBatchBegan()
        life.wrote()
        life.finish()  // the request asked to close
        let step12 = life.answered(pending: 0, open: true)
        #expect(step12 == .close(flushFirst: true))
        let step13 = life.readBatchEnded(pending: 0, open: true)
        #expect(step13 == .none)
    }

    @Test("draining: requests are still read (to be told shutting_down), from serving or finishing, not from a refusal")
    func draining() {
        var serving = ConnectionLifecycle()
        serving.drain()
        #expect(serving.state == .draining && serving.reads && !serving.servesRequests)
        var finishing = ConnectionLifecycle()
        finishing.finish()
        finishing.drain()
        #expect(finishing.state == .draining)
        finishing.finish()
        #expect(finishing.state == .draining, "the peer's end does not undo a drain")
        let step14 = finishing.settle(pending: 0, open: true)
        #expect(step14 == .close(flushFirst: false))

        var refused = ConnectionLifecycle()
        let step15 = refused.refuse()
        #expect(step15)
        refused.drain()
        #expect(refused.state == .refused && !refused.reads)
    }

    @Test("a refusal is sent only by a connection that was serving; nothing more is read after it")
    func refusal() {
        var serving = ConnectionLifecycle()
        let step16 = serving.refuse()
        #expect(step16, "the refusal is sent")
        #expect(serving.state == .refused && !serving.reads && !serving.keepsOpen)
        let step17 = serving.refuse()
        #expect(!step17, "only once")
        serving.wrote()
        let step18 = serving.readBatchEnded(pending: 0, open: true)
        #expect(step18 == .close(flushFirst: true))

        var draining = ConnectionLifecycle()
        draining.drain()
        let step19 = draining.refuse()
        #expect(!step19, "a draining connection's peer is owed nothing new")
        #expect(draining.state == .refused)

        var closed = ConnectionLifecycle()
        closed.finish()
        _ = closed.settle(pending: 0, open: true)
        let step20 = closed.refuse()
        #expect(!step20 && closed.state == .closed)
    }
}
