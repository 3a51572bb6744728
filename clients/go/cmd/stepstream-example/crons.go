package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stepstream/stepstream/clients/go/stepstream"
	pb "github.com/stepstream/stepstream/clients/go/stepstreamv1"
)

// crons creates a cron on the "linear" graph every 2 s (a leading seconds field), waits for
// one fire and its run, then deletes the cron.
func crons(ctx context.Context, conn *grpc.ClientConn) error {
	client := pb.NewCronServiceClient(conn)
	created, err := client.CreateCron(ctx, &pb.CreateCronRequest{Spec: &pb.CronSpec{
		Schedule:  &pb.CronSpec_Cron{Cron: "*/2 * * * * *"},
		GraphId:   "linear",
		InputJson: stepstream.MustJSON(map[string]any{"x": 40}),
		Options:   &pb.RunOptions{MetadataJson: stepstream.MustJSON(map[string]any{"client": "go"})},
	}})
	if err != nil {
		return err
	}
	cronID := created.GetCron().GetCronId()
	fmt.Println("cron", cronID, nextFire(created.GetCron()))

	listed, err := client.ListCrons(ctx, &pb.ListCronsRequest{PageSize: 100})
	if err != nil {
		return err
	}
	for _, cron := range listed.GetCrons() {
		if cron.GetCronId() == cronID {
			fmt.Println("listed", cronID, nextFire(cron))
		}
	}

	fire, err := firstRun(ctx, client, cronID)
	if err != nil {
		return err
	}
	fmt.Println("fire", cronID, fire.GetRunId(), stamp(fire.GetDueAt()))
	waited, err := pb.NewRunServiceClient(conn).WaitRun(ctx, &pb.WaitRunRequest{RunId: fire.GetRunId(), TimeoutSeconds: 60})
	if err != nil {
		return err
	}
	values, err := stepstream.DecodeJSON[struct{ X int }](waited.GetRun().GetValuesJson())
	if err != nil {
		return err
	}
	fmt.Println("ran", waited.GetRun().GetRunId(), waited.GetRun().GetStatus(), values.X)

	if _, err := client.DeleteCron(ctx, &pb.DeleteCronRequest{CronId: cronID}); err != nil {
		return err
	}
	fmt.Println("deleted", cronID)
	_, err = client.GetCron(ctx, &pb.GetCronRequest{CronId: cronID})
	if status.Code(err) != codes.NotFound {
		return fmt.Errorf("cron %s after its deletion: expected NOT_FOUND, got %v", cronID, err)
	}
	fmt.Println("gone", cronID)
	return nil
}

// firstRun polls the cron's fire records (one per due time) until one has started a run.
func firstRun(ctx context.Context, client pb.CronServiceClient, cronID string) (*pb.CronFire, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		fires, err := client.ListCronFires(ctx, &pb.ListCronFiresRequest{CronId: cronID})
		if err != nil {
			return nil, err
		}
		for _, fire := range fires.GetFires() {
			if fire.GetOutcome() == pb.CronFireOutcome_CRON_FIRE_OUTCOME_RAN {
				return fire, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("cron %s did not start a run within 60 s", cronID)
}

func nextFire(cron *pb.Cron) string {
	times := cron.GetNextFireTimes()
	if len(times) == 0 {
		return "none"
	}
	return stamp(times[0])
}

func stamp(t *timestamppb.Timestamp) string {
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}
