import Dispatch
import Testing

@testable import BrokerServer

@Suite("Loop probe (the watchdog's question)")
struct LoopProbeTests {
    @Test("a loop that cannot run a task makes the probe fail; it passes again once the loop runs")
    func stuckLoopFailsTheProbe() async throws {
        let healthy = try EpollLoop()
        let stuck = try EpollLoop()
        healthy.start(name: "probe-healthy")
        stuck.start(name: "probe-stuck")
        let probe = LoopProbe([{ answer in healthy.execute(answer) }, { answer in stuck.execute(answer) }])
        #expect(await probe.allAnswer(within: .seconds(5)))

        let gate = DispatchSemaphore(value: 0)
        stuck.execute { gate.wait() }  // a handler that never returns, as a blocked write(2) would
        #expect(await probe.allAnswer(within: .milliseconds(300)) == false, "one stuck loop is enough to fail")
        gate.signal()
        #expect(await probe.allAnswer(within: .seconds(5)))

        await healthy.stop()
        await stuck.stop()
    }

    @Test("no loops: nothing to wait for")
    func empty() async {
        #expect(await LoopProbe([]).allAnswer(within: .milliseconds(1)))
    }
}
